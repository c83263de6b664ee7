"""Unsupervised anomaly detection on chest X-rays: MemMC-MAE, its scorer and calibration, baselines, evaluation,
and the detector the app and the CLI share."""
