"""Random Bark checkpoints with the real token geometry, saved like `suno/bark-small`, and a tiny HuBERT.

They let every code path run offline: the same `from_pretrained` code that loads the hub
checkpoint loads these. The audio they make is noise.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np

from barkserve.bark import CODEBOOK_SIZE, CODEC_FRAME_RATE_HZ, N_COARSE, N_FINE, SEMANTIC_RATE_HZ, SEMANTIC_VOCAB
from barkserve.voices import LANGUAGES, VoicePrompt, save_presets

# Bark's vocabularies: text ids (BERT multilingual, offset by 10,048) plus specials; semantic;
# coarse (semantic + 2 x 1,024 codes + specials); fine (1,024 codes + pad specials).
SEMANTIC_INPUT_VOCAB = 129_600
SEMANTIC_OUTPUT_VOCAB = 10_048
COARSE_VOCAB = 12_096
FINE_VOCAB = 1_056
# The real bert-base-multilingual-cased vocabulary has 119,547 entries; our ids stay below that.
_TEXT_VOCAB_LIMIT = 119_547

SHAPES = {
    # Tiny: a few MB, fast enough for tests on two CPU cores.
    "tiny": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "codec_hidden": 16, "codec_filters": 4},
    # The real suno/bark-small transformer shapes (weights random), for honest benchmarks.
    "bark-small": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "codec_hidden": 128, "codec_filters": 32},
}


def build_random_bark(shape: str = "tiny", seed: int = 0):  # type: ignore[no-untyped-def]
    """Return a randomly initialised `BarkModel` with the given shapes and Bark's generation config."""
    import torch
    from transformers import (
        BarkCoarseConfig,
        BarkConfig,
        BarkFineConfig,
        BarkModel,
        BarkSemanticConfig,
        EncodecConfig,
        GenerationConfig,
    )
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {sorted(SHAPES)}; got {shape!r}")
    dims = SHAPES[shape]
    sub: dict[str, Any] = {
        "hidden_size": dims["hidden_size"],
        "num_layers": dims["num_layers"],
        "num_heads": dims["num_heads"],
        "block_size": 1024,
        # Tiny random models need large weights, or every input gives near-uniform logits and the
        # voice prompt would have no visible effect on the output.
        "initializer_range": 0.02 if shape == "bark-small" else 0.5,
    }
    codec = EncodecConfig(
        hidden_size=dims["codec_hidden"],
        codebook_dim=dims["codec_hidden"],
        num_filters=dims["codec_filters"],
        num_lstm_layers=1 if shape == "tiny" else 2,
    )
    config = BarkConfig(
        semantic_config=BarkSemanticConfig(
            input_vocab_size=SEMANTIC_INPUT_VOCAB, output_vocab_size=SEMANTIC_OUTPUT_VOCAB, **sub
        ).to_dict(),
        coarse_acoustics_config=BarkCoarseConfig(
            input_vocab_size=COARSE_VOCAB, output_vocab_size=COARSE_VOCAB, **sub
        ).to_dict(),
        fine_acoustics_config=BarkFineConfig(
            input_vocab_size=FINE_VOCAB, output_vocab_size=FINE_VOCAB, n_codes_total=8, n_codes_given=1, **sub
        ).to_dict(),
        codec_config=codec.to_dict(),
    )
    torch.manual_seed(seed)
    model = BarkModel(config).eval()
    # EnCodec's codebooks are buffers that start at zero; random ones make the decoder hear the codes.
    with torch.no_grad():
        for layer in model.codec_model.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.inited.fill_(1)
    # transformers' BarkModel.generate wants the stage configs as plain dicts (see DESIGN.md).
    model.generation_config = GenerationConfig.from_dict(BarkGenerationConfig().to_dict())
    return model


def make_tiny_checkpoint(
    out_dir: str | Path, presets_from: str | Path | None = None, seed: int = 0, shape: str = "tiny"
) -> Path:
    """Build and save a random Bark checkpoint that loads like `suno/bark-small`.

    Args:
        out_dir: Folder to write (created if missing).
        presets_from: A folder of real Bark prompts (`v2/<lang>_speaker_<n>.npz`, `announcer.npz`) to
            ship as the checkpoint's presets; random prompts with the right shapes otherwise.
        seed: Seed of the random weights and prompts.
        shape: "tiny" (tests) or "bark-small" (benchmarks).

    Returns:
        The folder, ready for `--model`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_random_bark(shape, seed).save_pretrained(out)
    _save_tokenizer(out)
    prompts = _load_presets(Path(presets_from)) if presets_from else _random_presets(seed)
    save_presets(out, prompts)
    return out


def make_tiny_hubert(out_dir: str | Path, seed: int = 0, hidden_size: int = 32, num_layers: int = 3) -> Path:
    """Save a tiny random `HubertModel` (real 16 kHz framing, tiny widths) loadable by `HubertFeaturizer`.

    Args:
        out_dir: Folder to write (created if missing).
        seed: Seed of the random weights.
        hidden_size: Width of the transformer (the quantizer's input size).
        num_layers: Number of transformer layers.

    Returns:
        The folder.
    """
    import torch
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        # Same kernels and strides as HuBERT base (total stride 320: 50 frames/s), fewer channels.
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    HubertModel(config).eval().save_pretrained(out)
    return out


def _save_tokenizer(out: Path) -> None:
    from transformers import BertTokenizer

    # A small cased WordPiece vocabulary: specials at BERT's ids, then characters and word pieces,
    # spread over the real id range so text ids exercise the whole embedding table.
    specials = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    chars = list(string.ascii_letters + string.digits + string.punctuation) + list("äöüßéèàçñ…—♪。、！？「」")
    words = chars + ["##" + c for c in string.ascii_letters + string.digits]
    vocab = [f"[unused{i}]" for i in range(_TEXT_VOCAB_LIMIT)]
    for idx, token in specials.items():
        vocab[idx] = token
    step = (_TEXT_VOCAB_LIMIT - 1000) // len(words)
    for i, word in enumerate(words):
        vocab[1000 + i * step] = word
    ids = {token: i for i, token in enumerate(vocab)}
    tokenizer = BertTokenizer(vocab=ids, do_lower_case=False, tokenize_chinese_chars=True)
    tokenizer.save_pretrained(out)


def random_voice(rng: np.random.Generator, n_semantic: tuple[int, int] = (120, 340), name: str = "") -> VoicePrompt:
    """A random voice prompt with Bark's shapes: S in [n_semantic) tokens and S x 75 / 49.9 frames."""
    s = int(rng.integers(*n_semantic))
    frames = round(s * CODEC_FRAME_RATE_HZ / SEMANTIC_RATE_HZ)
    fine = rng.integers(0, CODEBOOK_SIZE, size=(N_FINE, frames), dtype=np.int64)
    semantic = rng.integers(0, SEMANTIC_VOCAB, size=s, dtype=np.int64)
    return VoicePrompt(semantic=semantic, coarse=fine[:N_COARSE].copy(), fine=fine, name=name)


def _random_presets(seed: int) -> dict[str, VoicePrompt]:
    rng = np.random.default_rng(seed)
    names = [f"v2/{lang}_speaker_{n}" for lang in LANGUAGES for n in range(10)] + ["announcer"]
    return {name: random_voice(rng) for name in names}


def _load_presets(folder: Path) -> dict[str, VoicePrompt]:
    prompts = {}
    for path in sorted(folder.rglob("*.npz")):
        name = path.relative_to(folder).with_suffix("").as_posix()
        prompts[name] = VoicePrompt.from_npz(path, name=name)
    if not prompts:
        raise ValueError(f"no .npz voice prompts found under {folder}")
    return prompts


# Whisper's special tokens after `<|endoftext|>` and `<|startoftranscript|>` + the language tokens,
# in the order of the real multilingual vocabulary (the tokenizer finds a language at sot + 1 + index).
_WHISPER_TASK_TOKENS = ("<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>")
# A few byte-level BPE merges, so the tiny tokenizer has real multi-byte tokens.
_WHISPER_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("a", "n"), ("e", "r"), ("o", "n"), ("r", "e")]


def make_tiny_whisper(
    out_dir: str | Path,
    seed: int = 0,
    d_model: int = 32,
    layers: int = 2,
    encoder_layers: int | None = None,
    heads: int = 2,
    ffn: int | None = None,
) -> Path:
    """Save a tiny random `WhisperForConditionalGeneration` with a working processor, loadable offline.

    The model keeps Whisper's real audio geometry (80 mel bins, 30 s windows, 1,500 encoder
    positions) with tiny widths. The tokenizer is built here without any download: transformers'
    `WhisperTokenizer` accepts a vocabulary and merges, so it gets the 256 byte-level symbols, a few
    merges, and Whisper's special tokens in their real order (`<|endoftext|>`, `<|startoftranscript|>`,
    one token per language, task tokens, `<|notimestamps|>`, 1,501 timestamps). The generation config
    holds what `generate(language=..., task=...)` reads: `lang_to_id`, `task_to_id`,
    `no_timestamps_token_id`. Its transcripts are random text.

    Args:
        out_dir: Folder to write (created if missing).
        seed: Seed of the random weights.
        d_model: Width of encoder and decoder.
        layers: Layers of encoder and of decoder.

    Returns:
        The folder, loadable with `WhisperForConditionalGeneration.from_pretrained` and
        `WhisperProcessor.from_pretrained`.
    """
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    for left, right in _WHISPER_MERGES:
        vocab.setdefault(left + right, len(vocab))
    languages = [f"<|{code}|>" for code in LANGUAGES]
    timestamps = [f"<|{i * 0.02:.2f}|>" for i in range(1501)]
    specials = ["<|endoftext|>", "<|startoftranscript|>", *languages, *_WHISPER_TASK_TOKENS, "<|notimestamps|>"]
    for token in specials + timestamps:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=list(_WHISPER_MERGES))
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    ids = {token: vocab[token] for token in specials}

    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=encoder_layers or layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn or 2 * d_model,
        decoder_ffn_dim=ffn or 2 * d_model,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
        # Large random weights, or every frame gives the same near-uniform logits and one token repeats.
        init_std=0.5,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        max_length=448,
        is_multilingual=True,
        lang_to_id={token: ids[token] for token in languages},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        # Random weights would pick timestamps and language tokens as often as text; the real
        # checkpoints learned not to. Suppressing them keeps the tiny model's transcripts text.
        suppress_tokens=[vocab[t] for t in specials[2:] + timestamps if t != "<|notimestamps|>"],
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(
        out
    )
    return out


def make_tiny_speaker(
    out_dir: str | Path, seed: int = 0, hidden_size: int = 32, embedding_size: int = 16, layers: int = 2
) -> Path:
    """Save a tiny random `WavLMForXVector` and its feature extractor, laid out like `microsoft/wavlm-base-plus-sv`.

    Real 16 kHz framing (total conv stride 320), tiny widths; embeddings of `embedding_size` values.

    Args:
        out_dir: Folder to write (created if missing).
        seed: Seed of the random weights.
        hidden_size: Width of the transformer.
        embedding_size: Size of the x-vector.

    Returns:
        The folder, loadable with `AutoFeatureExtractor` and `WavLMForXVector.from_pretrained`.
    """
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size if layers <= 2 else 4 * hidden_size,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        num_buckets=32,
        max_bucket_distance=80,
        tdnn_dim=(16, 16, 16, 16, 32),
        xvector_output_dim=embedding_size,
    )
    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    WavLMForXVector(config).eval().save_pretrained(out)
    # The settings of microsoft/wavlm-base-plus-sv's preprocessor_config.json.
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=False, return_attention_mask=True
    ).save_pretrained(out)
    return out


def make_tiny_scorers(out_dir: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write `asr/` (tiny Whisper) and `speaker/` (tiny WavLM x-vector) under `out_dir`; return both folders."""
    out = Path(out_dir)
    return make_tiny_whisper(out / "asr", seed=seed), make_tiny_speaker(out / "speaker", seed=seed)


# facebook/wav2vec2-base-960h's vocabulary: specials, the word delimiter, letters by frequency, apostrophe.
_CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]


def make_tiny_ctc(out_dir: str | Path, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Path:
    """Save a tiny random `Wav2Vec2ForCTC` and its processor, laid out like `facebook/wav2vec2-base-960h`.

    Real 16 kHz framing (total conv stride 320: 50 frames/s) and the real character vocabulary; tiny
    widths. Its alignments are as random as its weights: it proves the loading and the wiring.

    Args:
        out_dir: Folder to write (created if missing).
        seed: Seed of the random weights.
        hidden_size: Width of the transformer.
        layers: Number of transformer layers.

    Returns:
        The folder, loadable with `AutoProcessor` and `AutoModelForCTC.from_pretrained`.
    """
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_file = out / "vocab.json"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(_CTC_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|", do_lower_case=False
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    config = Wav2Vec2Config(
        vocab_size=len(_CTC_VOCAB),
        pad_token_id=0,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        ctc_loss_reduction="mean",
    )
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(config).eval().save_pretrained(out)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


def make_tiny_adapter(
    adapters_dir: str | Path,
    name: str,
    base_model: str | Path,
    stages: tuple[str, ...] = ("semantic", "coarse", "fine"),
    rank: int = 2,
    alpha: int = 4,
    seed: int = 0,
    std: float = 0.3,
) -> Path:
    """Write a random LoRA adapter of the checkpoint in `base_model` as `adapters_dir/name`.

    A and B are both random (B is zero only before training), so the adapter changes the tokens.

    Returns:
        The adapter's folder.
    """
    import torch
    from transformers import BarkConfig

    from barkserve.engine.adapters import PROJECTIONS, STAGE_MODULES, AdapterInfo, tensor_name, write_adapter

    config = BarkConfig.from_pretrained(base_model)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for stage in stages:
        sub = getattr(config, f"{STAGE_MODULES[stage]}_config")
        hidden = sub.hidden_size
        widths = {"attn.att_proj": (hidden, 3 * hidden), "attn.out_proj": (hidden, hidden),
                  "mlp.in_proj": (hidden, 4 * hidden), "mlp.out_proj": (4 * hidden, hidden)}  # fmt: skip
        for layer in range(sub.num_layers):
            for projection in PROJECTIONS:
                n_in, n_out = widths[projection]
                a, b = torch.randn(rank, n_in, generator=generator), torch.randn(n_out, rank, generator=generator)
                tensors[tensor_name(stage, layer, projection, "A")] = a * std
                tensors[tensor_name(stage, layer, projection, "B")] = b * std
    base = str(Path(base_model).resolve()) if Path(base_model).is_dir() else str(base_model)
    info = AdapterInfo(name, base, tuple(stages), rank, alpha, run="", checkpoint="", step=None, eval=None)
    return write_adapter(Path(adapters_dir) / name, info, tensors)
