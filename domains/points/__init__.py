"""3-D point clouds: Point-MAE grouping (FPS, kNN) and masked point modelling (``point_mae``, ``point_bert``,
``point_cmae`` on the ``tokenizer`` / ``encoder`` modules; ``objects`` builds the real object set, ``probe``
evaluates encoders on it). Point-cloud files are read by ``maskworks.core.io.points`` (every domain shares it).

Nothing heavy is imported here; ``grouping`` (torch) and ``bench`` (open3d) load on demand.
"""
