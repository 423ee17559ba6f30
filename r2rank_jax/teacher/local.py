"""Teacher = a local JAX model through a `Generator`, batch by batch.

Each request's message (normally the self-reflective prompt with the answer-conditioned hint of
`teacher.prompts`) is rendered as one user turn with the model's chat template. Generation stops at
EOS or at ``</answer>`` (as RL rollouts do), which the response keeps.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

from r2rank_jax.teacher.base import TeacherReply, TeacherRequest
from r2rank_jax.teacher.generator import GenerationOptions, Generator


def chat_ids(tokenizer, message: str) -> list[int]:
    """Token ids of one user turn rendered with the chat template, ending with the assistant header."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                        tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


class LocalTeacher:
    def __init__(self, generator: Generator, options: GenerationOptions = GenerationOptions(), batch_size: int = 8,
                 name: str = "local"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.generator = generator
        self.options = options
        self.batch_size = batch_size
        self.name = name

    def respond(self, requests: Sequence[TeacherRequest]) -> Iterator[TeacherReply]:
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start:start + self.batch_size]
            prompts = [chat_ids(self.generator.tokenizer, r.message) for r in batch]
            try:
                generations = self.generator.generate(prompts, self.options)
            except ValueError as e:  # e.g. a prompt longer than the largest bucket
                for r in batch:
                    yield TeacherReply(request=r, text=None, failure="error", error=str(e)[:300])
                continue
            for r, g in zip(batch, generations):
                # Decoded from the ids, so the response keeps its closing </answer> (g.text drops stop strings).
                text = self.generator.tokenizer.decode(g.token_ids, skip_special_tokens=True)
                yield TeacherReply(request=r, text=text)

    def close(self) -> None:
        pass
