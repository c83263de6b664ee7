"""Medical image reading: DICOM/NIfTI/PNG in physical units (HU), CT windows, MONAI transforms, image folders."""
