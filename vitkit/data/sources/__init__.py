"""One module per source family; each exposes ``build_*(ctx: SourceContext) -> RawDataset``."""
