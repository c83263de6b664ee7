"""Medical imaging, in three sub-packages imported on demand (reading a DICOM does not pay for MONAI or timm):

- ``imaging``: DICOM/NIfTI/PNG reading in physical units (HU), CT windows, MONAI transforms, image folders;
- ``spark``: SparK (sparse masked modelling for any CNN, 2-D and 3-D), MoCo v2, the label-fraction study;
- ``anomaly``: MemMC-MAE anomaly heatmaps on chest X-rays, with the detector the app and the CLI share.
"""
