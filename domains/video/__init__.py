"""Video: VideoMAE V2 dual masking (``videomae``), clip data sets (``data``), reconstruction job
(``reconstruct``), probe and benchmark. Files are read by the shared ``maskworks.core.io.video``."""
