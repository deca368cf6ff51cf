"""Result objects: the model's findings as DICOM objects for the PACS.

The README's "Results in the viewer" says what each object shows and where.

One module per kind of object, each with a builder named after what it builds:
``build_structured_report`` (TID 1500), ``build_mammography_cad_report`` (TID 4000),
``build_secondary_captures``, ``build_presentation_states`` and
``build_rejection_note`` (IHE IOCM). They all take a ``ResultSet``
(``result_set.py``); ``build_outputs`` builds the configured kinds at once.
"""
