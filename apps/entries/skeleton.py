"""Skeleton actions: ``maskworks eval skeleton/actions`` (the SkeletonMAE study), ``maskworks predict
skeleton/actions`` and the demo tab."""
EVALS = {"skeleton/actions": "maskworks.apps.commands.skeleton:eval_actions",
         "skeleton/reconstruction": "maskworks.apps.commands.skeleton:eval_reconstruction"}
PREDICTS = {"skeleton/actions": "maskworks.apps.commands.skeleton:predict_actions"}
TABS = {"Skeleton actions (SkeletonMAE)": "maskworks.apps.tabs.skeleton:build_tab"}
APIS = {"skeleton_actions": "maskworks.apps.tabs.skeleton:api"}
