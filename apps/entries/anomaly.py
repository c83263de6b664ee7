"""Anomaly detection on chest X-rays (MemMC-MAE): evaluation, prediction, latency bench, demo tab."""
EVALS = {"medical/anomaly": "maskworks.domains.medical.anomaly_eval:main"}
PREDICTS = {"medical/anomaly": "maskworks.domains.medical.anomaly_detector:predict_main"}
BENCHES = {"anomaly-latency": "maskworks.domains.medical.anomaly_eval:bench_main"}
TABS = {"Anomaly heatmap (chest X-ray)": "maskworks.apps.anomaly_app:build_tab"}
