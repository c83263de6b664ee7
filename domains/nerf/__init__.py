"""NeRF-MAE on radiance grids: RGB + density on a voxel grid, masked and reconstructed.

Modules: :mod:`.grid` (the grid and NeRF-MAE's ``.npz``), :mod:`.render` (volume rendering),
:mod:`.scenes` (posed images), :mod:`.fit` (a voxel radiance field fitted on a CPU), :mod:`.mesh`
(grids from meshes via trimesh), :mod:`.inputs` (any input -> a grid), :mod:`.nerf_mae` (the models
and the loss), :mod:`.pretrain` (the recipe's task), :mod:`.labelling` (the downstream task) and
:mod:`.reconstruct` (the job behind the tab and ``maskworks predict nerf/reconstruct``).
"""
