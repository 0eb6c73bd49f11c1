# Helpers of rules/dataset_files.smk: which dataset-level files the source dataset has
# (one listing of its root, bids2hub.hub.restore.dataset_level_files) and their copies.
from bids2hub.hub.restore import dataset_level_files
from bids2hub.layout import BIDS_FILES

DATASET_FILES = dataset_level_files(SETUP.bids_dir)


def dataset_file_targets():
    """hub/bids/<name> for every dataset-level file of the source dataset."""
    return [f"{OUT}/hub/{BIDS_FILES}/{name}" for name in DATASET_FILES]
