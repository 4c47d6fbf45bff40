"""A tiny Qwen2.5-VL with random weights, built offline, for tests, the demo and benchmarks.

Real code paths (Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, the real chat template,
the real special tokens) at a size that runs on a CPU in milliseconds. Its weights are random:
what it generates is noise, never a quality judgement. The tokenizer is a byte-level BPE trained
here on the prompts and a few quality words, so no download is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from rali_edge._atomic import atomic_path, atomic_write_json

# Qwen2.5-VL's added tokens, in Qwen's order (their ids follow the BPE vocabulary here).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2.5-VL-7B-Instruct's chat template, byte for byte (TRL recognises it and swaps in its
# training variant for assistant-only loss, exactly as with the real model).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# Patch 14 and merge 2 as in the real model; pixel bounds keep a tiny image at 2x2 merged tokens.
PATCH_SIZE = 14
MERGE_SIZE = 2
MIN_PIXELS = (PATCH_SIZE * MERGE_SIZE) ** 2 * 4  # 56 x 56
MAX_PIXELS = (PATCH_SIZE * MERGE_SIZE) ** 2 * 16  # 112 x 112


def _corpus() -> list[str]:
    from rali_edge.teacher import prompts
    from rali_edge.teacher.template import CLASS_EFFECTS, LEVELS, SEVERITY_WORDS

    lines = [prompts.SYSTEM_PROMPT, prompts.SCORE_PROMPT, prompts.DEGRADATION_PROMPT, prompts.DESCRIPTION_PROMPT]
    lines += [" ".join(e) for e in CLASS_EFFECTS.values()] + [" ".join(w) for w in SEVERITY_WORDS.values()]
    lines += [" ".join(LEVELS), "<think>\nThe image is sharp.\n</think>\n<answer>\n{\"rating\": 3.45}\n</answer>"]
    lines += ["0123456789 .,:;!?{}[]()\"' -_\n"]
    return lines


def build_tiny_tokenizer(vocab_size: int = 400):
    """A PreTrainedTokenizerFast (byte-level BPE) with Qwen's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    fast.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return fast


def build_tiny_processor():
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = build_tiny_tokenizer()
    image_processor = Qwen2VLImageProcessor(
        min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=2
    )
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=PATCH_SIZE,
                                            merge_size=MERGE_SIZE, temporal_patch_size=2)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                               chat_template=QWEN2_5_VL_CHAT_TEMPLATE)


def tiny_config(tokenizer, hidden: int = 32, layers: int = 2):
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    heads = 4
    half_head = hidden // heads // 2
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                         "mrope_section": [half_head // 2, half_head - half_head // 2 - half_head // 4, half_head // 4]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=layers,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_heads=2,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=2,
        window_size=PATCH_SIZE * MERGE_SIZE * 2,
        out_hidden_size=hidden,
        fullatt_block_indexes=[layers - 1],
    )
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_teacher(out_dir: str | os.PathLike[str], seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Save a loadable tiny Qwen2.5-VL folder (model, tokenizer, processor) with random weights.

    `Qwen2_5_VLForConditionalGeneration.from_pretrained(out_dir)` and
    `AutoProcessor.from_pretrained(out_dir)` load it. A `RANDOM_WEIGHTS.json` marker says what it is.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    processor = build_tiny_processor()
    config = tiny_config(processor.tokenizer, hidden=hidden, layers=layers)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.text_config.eos_token_id, pad_token_id=config.text_config.pad_token_id
    )
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        atomic_write_json(
            tmp / "RANDOM_WEIGHTS.json",
            {"note": "tiny Qwen2.5-VL with random weights for tests and demos; its outputs mean nothing",
             "seed": seed, "hidden": hidden, "layers": layers},
        )
    return out_dir
