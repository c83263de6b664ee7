"""The medical domain's entries: the label-fraction study and the SparK step benchmark."""
EVALS = {"medical/label-fractions": "maskworks.domains.medical.study:main"}
BENCHES = {"spark-step": "maskworks.domains.medical.bench:main"}
