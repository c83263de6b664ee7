"""Medical imaging: DICOM/NIfTI/PNG loading in Hounsfield units, CT windows, MONAI transforms,
and SparK (sparse masked modelling) pre-training for any CNN, 2-D or 3-D.

Submodules are imported on demand (``maskworks.domains.medical.io``, ``.windows``,
``.transforms`` (needs MONAI), ``.sparse``, ``.spark``, ``.resnet3d``) so that reading a DICOM
does not pay for importing MONAI or timm.
"""
