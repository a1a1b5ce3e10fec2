"""The audio app's augmentations (`apps/audio_similarity/augment.py`), its `--loss` and
`--augment` options, and the offline sets of `tools/audio_sets.py` (skipped where
fluidsynth or espeak-ng is not installed)."""

import os
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("librosa")

from apps.audio_similarity import augment as A  # noqa: E402
from apps.audio_similarity.features import FeatureSettings  # noqa: E402

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")


def test_time_stretch_resamples_the_frame_axis():
    ramp = np.tile(np.arange(100, dtype=np.float32)[:, None], (1, 3))
    fast = A.time_stretch(ramp, 1.25)
    assert fast.shape == (80, 3)
    np.testing.assert_allclose(fast[:, 0], np.arange(80) * 1.25, atol=1e-5)
    assert A.time_stretch(ramp, 0.8).shape == (125, 3)


def test_pitch_shift_moves_a_partial_by_the_interval():
    settings = FeatureSettings()
    f = A.band_frequencies(settings)
    x = np.full((4, 64), -80.0, np.float32)
    x[:, 30] = 0.0  # one partial at band 30
    up = A.pitch_shift(x, 12.0, settings)  # an octave: the partial at twice the frequency
    peak = int(np.argmax(up[0]))
    assert abs(f[peak] - 2 * f[30]) <= (f[peak + 1] - f[peak - 1]) / 2
    np.testing.assert_array_equal(A.pitch_shift(x, 0.0, settings), x)


def test_equalize_reverb_and_mixing():
    x = np.full((50, 64), -60.0, np.float32)
    np.testing.assert_array_equal(A.equalize(x, [0.0, 0.0, 0.0]), x)
    assert np.ptp(A.equalize(x, [6.0, 0.0, 0.0])[0]) == pytest.approx(12.0, abs=0.1)
    # An impulse decays by 60 dB in rt60 seconds at the lowest band (100 frames a second).
    power = np.zeros((100, 64), np.float32)
    power[0] = 1.0
    tail = A.add_reverb(power, rt60=0.5, wet=1.0) - power
    drop = 10 * np.log10(tail[1:51, 0] / tail[0:50, 0])
    np.testing.assert_allclose(drop, -60 * 0.01 / 0.5, atol=1e-3)
    assert tail[20, 63] < tail[20, 0]  # the high bands decay faster
    mixed = A.to_power(A.mix(x, x + 20.0, snr_db=10.0))
    np.testing.assert_allclose(mixed, A.to_power(x) * 1.1, rtol=1e-4)  # other scaled to 10 dB below x
    assert np.all(np.isfinite(A.mix_noise(x, np.random.default_rng(0), 10.0)))


def test_augmenter_is_seeded_and_each_step_can_be_off():
    rng = np.random.default_rng(0)
    x = rng.normal(-40, 10, (150, 64)).astype(np.float32)
    pool = [rng.normal(-40, 10, (n, 64)).astype(np.float32) for n in (30, 120)]
    full = A.Augmenter.recordings(frames=96, stretch_prob=1.0, pitch_prob=1.0, reverb_prob=1.0, mix_prob=1.0)
    a = full(x, np.random.default_rng(1), pool=pool)
    b = full(x, np.random.default_rng(1), pool=pool)
    assert a.shape == (96, 64) and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    basic = A.Augmenter(frames=96)(x, np.random.default_rng(1), pool=pool)
    assert basic.shape == (96, 64) and not np.array_equal(basic, a)
    crop = A.Augmenter(frames=96, enabled=False)(x, np.random.default_rng(1))
    assert any(np.array_equal(crop, x[s : s + 96]) for s in range(55))


def test_loss_and_augment_options():
    from apps.audio_similarity import __main__ as cli
    from apps.audio_similarity import training
    from keras_triplet.losses import MultiSimilarityLoss, SupConLoss, TripletLoss

    def parsed(*options):
        return cli.build_parser().parse_args(["train", "DATA", "--out", "m.keras", *options])

    default = parsed()
    assert isinstance(training.make_loss(default), TripletLoss)
    assert isinstance(training.make_loss(parsed("--loss", "multi-similarity")), MultiSimilarityLoss)
    assert isinstance(training.make_loss(parsed("--loss", "supcon")), SupConLoss)
    assert training.make_augmenter(default, FeatureSettings()) == A.Augmenter(frames=96)
    assert training.make_augmenter(parsed("--augment", "full"), FeatureSettings()).pitch_prob > 0
    assert not training.make_augmenter(parsed("--no-augment"), FeatureSettings()).enabled
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "DATA", "--out", "m.keras", "--loss", "nope"])


# ------------------------------------------------------------------ tools/audio_sets.py


@pytest.fixture(scope="module")
def audio_sets():
    sys.path.insert(0, TOOLS)
    try:
        import audio_sets
    finally:
        sys.path.remove(TOOLS)
    return audio_sets


def test_midi_file_and_note_plan(audio_sets):
    plan = audio_sets.note_plan([0, 40], clips_per_class=3, seed=0)
    assert plan == audio_sets.note_plan([0, 40], clips_per_class=3, seed=0)
    notes = [n for p in (0, 40) for n in plan[p]]
    assert all(0.5 <= length <= 2.0 and 40 <= v <= 127 for _, length, _, v in notes)
    assert all(55 <= pitch <= 100 for _, _, pitch, _ in plan[40])  # the violin's range
    assert all(b[0] >= a[0] + a[1] + 1.0 - 1e-9 for a, b in zip(notes, notes[1:]))
    midi = audio_sets.midi_file([(40, plan[40])])
    assert midi[:4] == b"MThd" and midi[14:18] == b"MTrk" and midi.endswith(b"\xff\x2f\x00")
    train, heldout = audio_sets.split_classes(list(range(10)), seed=0)
    assert sorted(train + heldout) == list(range(10)) and len(train) == 5


@pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not os.path.exists("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    reason="needs fluidsynth and timgm6mb-soundfont (apt-get install fluidsynth timgm6mb-soundfont)",
)
def test_render_instrument_clips(audio_sets, tmp_path):
    import soundfile

    plan = audio_sets.note_plan([40], clips_per_class=2, seed=0)
    assert audio_sets.render(audio_sets.TIMGM6MB, plan, str(tmp_path), str(tmp_path)) == 2
    files = sorted((tmp_path / "040_violin").iterdir())
    y, sr = soundfile.read(str(files[0]))
    assert sr == 16000 and y.ndim == 1 and len(y) == pytest.approx(plan[40][0][1] * sr, abs=2)
    assert np.abs(y).max() > 1e-3


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)")
def test_speak_word(audio_sets, tmp_path):
    y = audio_sets.speak("river", "en-us+f3", 160, 50, str(tmp_path))
    assert y.dtype == np.float32 and 0.2 * 16000 < len(y) < 1.5 * 16000 and np.abs(y).max() > 0.05
