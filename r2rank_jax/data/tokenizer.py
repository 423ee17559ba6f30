"""A small sentencepiece tokenizer for the synthetic world, saved as a transformers tokenizer.

    python -m r2rank_jax.data.tokenizer --benchmark DIR --out TOKDIR [--vocab_size 1024]

Training: a sentencepiece BPE model (byte fallback, identity normalization, no dummy prefix,
whitespace kept as is, digits split, ``num_threads=1`` so it is deterministic) on the world's text:
item titles and attribute values, the profiles and rendered user-context lines of the train split,
every line of the prompt templates, the answer strings and a few reasoning phrases. Takes seconds.
(sentencepiece's unigram trainer stalls at ~300 word pieces on this small, repetitive corpus and
splits even frequent words such as "Vortex"; BPE fills the vocabulary with whole words.)

Wrapping: the pieces and their merges (recovered from the piece order, as transformers' converter
does) become a `tokenizers` BPE model with byte fallback, a pre-tokenizer that isolates newlines and
then splits before each ``▁`` without ever prepending one (so a text tokenized on its own equals the
same text inside a longer one at a newline — what the prefix/suffix split of `prompts` needs) and a
decoder that inverts it exactly: ``decode(encode(x)) == x``. Special tokens: ``<unk>``, ``<pad>`` (pad),
``<|im_start|>``, ``<|im_end|>`` (eos); ``<answer>`` and ``</answer>`` are single (non-special) tokens.
The chat template is plain ChatML without a default system turn. ``AutoTokenizer.from_pretrained(dir)``
loads the result offline; ``dir/spm.model`` keeps the sentencepiece model for reference.
"""
from __future__ import annotations

import argparse
import io
import os
import pathlib
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from r2rank_jax.data import benchmark
from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data.world_phrases import REASONING_PHRASES

UNK, PAD, IM_START, IM_END = "<unk>", "<pad>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, IM_START, IM_END)
ANSWER_TOKENS: tuple[str, ...] = (pt.ANSWER_OPEN, pt.ANSWER_CLOSE)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_SPACE = "\u2581"  # sentencepiece's visible space


def template_lines() -> list[str]:
    """Every line of every prompt template, with the answer strings and the fixed labels."""
    texts = [pt.COT_INSTRUCTIONS, pt.NO_COT_INSTRUCTIONS,
             pt.LISTWISE_INSTRUCTIONS.format(k=20, ANSWER_OPEN=pt.ANSWER_OPEN, ANSWER_CLOSE=pt.ANSWER_CLOSE)]
    lines = [ln for t in texts for ln in t.splitlines() if ln]
    lines += [pt.CONTEXT_LABEL + pt.HISTORY_LABEL + pt.EMPTY_HISTORY, pt.CANDIDATE_LABEL,
              pt.LISTWISE_CANDIDATES_LABEL, *pt.answer_strings(), "system", "user", "assistant"]
    return lines


def world_corpus(benchmark_dir: str | os.PathLike[str]) -> list[str]:
    """Training lines for the tokenizer of a prepared benchmark (see module docstring)."""
    items = benchmark.load_items(benchmark_dir)
    lines: list[str] = []
    for obj in items.values():
        lines.extend(pt.clean_text(str(v)) for k, v in obj.items() if k != "item_id")
    titles = {i: pt.clean_text(obj["title"]) for i, obj in items.items()}
    for r in benchmark.load_split(benchmark_dir, "train"):
        profile = pt.clean_text(r.profile) if r.profile else None
        lines.append(pt.context_line(profile, [titles[i] for i in r.history]).rstrip("\n"))
        lines.append(pt.candidate_part(titles[r.positive]))
    # Templates repeated so their words become whole pieces despite the many titles.
    lines += template_lines() * 20 + list(REASONING_PHRASES) * 5
    return [ln for ln in lines if ln]


def train_sentencepiece(lines: Sequence[str], vocab_size: int = 1024) -> bytes:
    """A serialized sentencepiece BPE model trained on ``lines`` (deterministic)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        num_threads=1,
        shuffle_input_sentence=False,
        unk_id=0, pad_id=1, bos_id=-1, eos_id=-1,
        unk_piece=UNK, pad_piece=PAD,
        control_symbols=[IM_START, IM_END],
        user_defined_symbols=list(ANSWER_TOKENS),
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return model.getvalue()


def to_transformers(spm_model: bytes) -> Any:
    """The sentencepiece model as a transformers fast tokenizer (see module docstring)."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    sp = spm.SentencePieceProcessor(model_proto=spm_model)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    special = {sp.id_to_piece(i) for i in range(sp.get_piece_size())
               if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.id_to_piece(i) in ANSWER_TOKENS}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=bpe_merges(vocab, special), unk_token=UNK,
                               byte_fallback=True, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="never", split=True),
    ])
    tok.decoder = decoders.Sequence([decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ANSWER_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK,
        pad_token=PAD,
        eos_token=IM_END,
        chat_template=CHATML_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
        padding_side="left",
    )


def bpe_merges(vocab: dict[str, int], skip: set[str]) -> list[tuple[str, str]]:
    """Merges of a sentencepiece BPE vocabulary: piece ids are in merge order, and every piece ``p``
    is the merge of some split ``p = a + b`` with both parts in the vocabulary."""
    merges: list[tuple[int, int, int, str, str]] = []
    for piece, rank in vocab.items():
        if piece in skip or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab and left not in skip and right not in skip:
                merges.append((rank, vocab[left], vocab[right], left, right))
    return [(left, right) for *_, left, right in sorted(merges)]


def train_tokenizer(lines: Iterable[str], out: str | os.PathLike[str], vocab_size: int = 1024) -> Any:
    """Trains on ``lines``, saves into directory ``out`` (loadable with ``AutoTokenizer``); returns it."""
    lines = [ln for ln in lines if ln]
    model = train_sentencepiece(lines, vocab_size)
    tokenizer = to_transformers(model)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    (out / "spm.model").write_bytes(model)
    return tokenizer


def train_world_tokenizer(benchmark_dir: str | os.PathLike[str], out: str | os.PathLike[str], vocab_size: int = 1024) -> Any:
    """`train_tokenizer` on `world_corpus` of a prepared benchmark."""
    return train_tokenizer(world_corpus(benchmark_dir), out, vocab_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.data.tokenizer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True, help="prepared benchmark directory (train split + items)")
    parser.add_argument("--out", required=True, help="tokenizer directory to write")
    parser.add_argument("--vocab_size", type=int, default=1024)
    args = parser.parse_args(argv)
    tok = train_world_tokenizer(args.benchmark, args.out, args.vocab_size)
    print(f"tokenizer with {len(tok)} tokens written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
