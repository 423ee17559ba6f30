"""The run machinery every method shares: workdir layout, builders (model, tokenizer, sampler,
checkpointer, data pipeline) from an ExperimentConfig, head and verbalizer scoring, the training-loop driver."""
