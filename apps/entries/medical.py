"""The medical domain: anomaly heatmaps (predict, eval, latency bench, tab), the label-fraction study, the SparK
step benchmark."""
EVALS = {"medical/label-fractions": "maskworks.apps.commands.medical:eval_label_fractions",
         "medical/anomaly": "maskworks.apps.commands.medical:eval_anomaly",
         "medical/anomaly-scoring": "maskworks.apps.commands.medical:eval_anomaly_scoring",
         "medical/anomaly-gate": "maskworks.apps.commands.medical:eval_anomaly_gate"}
PREDICTS = {"medical/anomaly": "maskworks.apps.commands.medical:predict_anomaly"}
BENCHES = {"spark-step": "maskworks.apps.commands.medical:bench_spark_step",
           "anomaly-latency": "maskworks.apps.commands.medical:bench_anomaly_latency"}
TABS = {"Anomaly heatmap (chest X-ray)": "maskworks.apps.tabs.anomaly:build_tab"}
APIS = {"medical_anomaly": "maskworks.apps.api:medical_anomaly"}
