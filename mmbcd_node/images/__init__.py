"""The study's images as the model and the result builders read them: the input contract
(``source_image``) and which images are analysed (``image_selection``)."""
