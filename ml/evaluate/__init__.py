"""Evaluation of MMBCD the way the paper reports it: metrics per view and per breast,
ROC curves, attention pictures and the ablation table."""
