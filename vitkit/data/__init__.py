"""Datasets: the catalog, the uint8 cache, the on-device loader and batched augmentation."""

from vitkit.data.catalog import (
    Dataset,
    DatasetSpec,
    default_data_root,
    get_dataset_spec,
    list_datasets,
    load_dataset,
    register_dataset,
)
from vitkit.data.types import RawDataset, SourceContext, Split

__all__ = [
    "Dataset",
    "DatasetSpec",
    "RawDataset",
    "SourceContext",
    "Split",
    "default_data_root",
    "get_dataset_spec",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
