"""Offline stand-ins for real recordings, to evaluate `apps.audio_similarity` on sounds
it was not designed on (issue 14). Seeded: the same command writes the same files.

    python tools/audio_sets.py instruments OUT [--soundfont SF] [--heldout-soundfont SF]
    python tools/audio_sets.py words OUT

Both write `OUT/train/<class>/*.wav` and `OUT/heldout/<class>/*.wav` (16 kHz mono, 16-bit),
split *by class*: no held-out class is ever seen in training.

`instruments` renders General MIDI programs with FluidSynth (the `fluidsynth` command;
Debian: `apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont`, and
`musescore-general-soundfont` for a third one): one class per program (0-111; the
percussive programs 112-119 and the sound effects 120-127 are left out), each clip one
note at a random pitch of the instrument's usual range, a random velocity (40-127) and a
random length (0.5-2 s, the note released 0.2 s before the clip ends). Half the programs
train (from `--soundfont`, FluidR3 by default), the others are held out, rendered from a
*different* soundfont (`--heldout-soundfont`, TimGM6mb by default) that training never
hears: new instruments *and* new samples of them. `OUT/heldout_same/` has the held-out
programs from the training soundfont too, to tell the two apart.

`words` speaks 30 English words with espeak-ng (Debian: `apt-get install espeak-ng`): one
class per word, each clip a random accent (8 of espeak-ng's English voices) x variant
(`+m1`..`+m7`, `+f1`..`+f5`, `+croak`, `+whisper`, `+klatt`, ...), speed (110-230 words
per minute), pitch (15-85) and word gap; 15 words train, 15 are held out.

Without fluidsynth or espeak-ng the command says which package is missing (exit 2).
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

SAMPLE_RATE = 16000
FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TIMGM6MB = "/usr/share/sounds/sf2/TimGM6mb.sf2"

# General MIDI program names (0-111; 112-127 are percussion and sound effects).
GM_PROGRAMS = (
    "acoustic_grand_piano bright_acoustic_piano electric_grand_piano honky_tonk_piano "
    "electric_piano_1 electric_piano_2 harpsichord clavinet celesta glockenspiel music_box "
    "vibraphone marimba xylophone tubular_bells dulcimer drawbar_organ percussive_organ "
    "rock_organ church_organ reed_organ accordion harmonica tango_accordion "
    "acoustic_guitar_nylon acoustic_guitar_steel electric_guitar_jazz electric_guitar_clean "
    "electric_guitar_muted overdriven_guitar distortion_guitar guitar_harmonics acoustic_bass "
    "electric_bass_finger electric_bass_pick fretless_bass slap_bass_1 slap_bass_2 "
    "synth_bass_1 synth_bass_2 violin viola cello contrabass tremolo_strings "
    "pizzicato_strings orchestral_harp timpani string_ensemble_1 string_ensemble_2 "
    "synth_strings_1 synth_strings_2 choir_aahs voice_oohs synth_voice orchestra_hit trumpet "
    "trombone tuba muted_trumpet french_horn brass_section synth_brass_1 synth_brass_2 "
    "soprano_sax alto_sax tenor_sax baritone_sax oboe english_horn bassoon clarinet piccolo "
    "flute recorder pan_flute blown_bottle shakuhachi whistle ocarina lead_1_square "
    "lead_2_sawtooth lead_3_calliope lead_4_chiff lead_5_charang lead_6_voice lead_7_fifths "
    "lead_8_bass_lead pad_1_new_age pad_2_warm pad_3_polysynth pad_4_choir pad_5_bowed "
    "pad_6_metallic pad_7_halo pad_8_sweep fx_1_rain fx_2_soundtrack fx_3_crystal "
    "fx_4_atmosphere fx_5_brightness fx_6_goblins fx_7_echoes fx_8_sci_fi sitar banjo "
    "shamisen koto kalimba bagpipe fiddle shanai"
).split()

# Usual MIDI note ranges: by family of 8 programs, then the instruments that differ.
FAMILY_RANGE = (
    (36, 96),  # pianos
    (60, 96),  # chromatic percussion
    (36, 84),  # organs
    (40, 84),  # guitars
    (28, 55),  # basses
    (36, 84),  # strings (below)
    (40, 84),  # ensembles
    (40, 77),  # brass
    (44, 84),  # reeds
    (60, 96),  # pipes
    (40, 84),  # synth leads
    (36, 84),  # synth pads
    (40, 84),  # synth effects
    (48, 84),  # ethnic
)
PROGRAM_RANGE = {
    40: (55, 100), 41: (48, 84), 42: (36, 76), 43: (28, 60), 46: (24, 96), 47: (40, 55),
    56: (55, 82), 57: (40, 72), 58: (28, 58), 59: (55, 82), 60: (41, 77),
    64: (56, 87), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91), 69: (52, 81),
    70: (34, 72), 71: (50, 91), 72: (74, 102), 73: (60, 96), 74: (60, 96),
    87: (28, 55), 109: (55, 84), 110: (55, 96), 111: (60, 88),
}  # fmt: skip

WORDS = (
    "apple river yellow seven window music garden orange basket thunder pencil rocket "
    "silver monkey candle butter ladder kitten dragon forest jacket lemon marble pepper "
    "rabbit summer tiger velvet wagon zero"
).split()
ACCENTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 f1 f2 f3 f4 f5 croak whisper klatt klatt2 klatt3 klatt4 "
    "klatt6 grandpa grandma edward steph iven annie belinda john linda"
).split()


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def split_classes(names, seed):
    """`(train, heldout)`: a seeded half of `names` each (sorted)."""
    order = np.random.default_rng(seed).permutation(len(names))
    half = (len(names) + 1) // 2
    return sorted(names[i] for i in order[:half]), sorted(names[i] for i in order[half:])


def write_wav(path, y, sr=SAMPLE_RATE):
    import soundfile

    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, np.clip(y, -1.0, 1.0), sr, subtype="PCM_16")


# ------------------------------------------------------------------------------ instruments


def _vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def midi_file(blocks, ticks_per_second=960):
    """A one-track Standard MIDI File (120 bpm, 480 ticks a beat): for each
    `(program, notes)` block a program change, then its notes `(start_s, length_s,
    pitch, velocity)` one after another on channel 0 (starts non-decreasing)."""
    events, now = bytearray(), 0
    for program, notes in blocks:
        events += _vlq(0) + bytes([0xC0, program])
        for start, length, pitch, velocity in notes:
            on = int(round(start * ticks_per_second))
            off = int(round((start + length) * ticks_per_second))
            events += _vlq(on - now) + bytes([0x90, pitch, velocity])
            events += _vlq(off - on) + bytes([0x80, pitch, 0])
            now = off
    events += _vlq(ticks_per_second) + bytes([0xFF, 0x2F, 0])
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_second // 2)
    return header + b"MTrk" + struct.pack(">I", len(events)) + bytes(events)


def note_plan(programs, clips_per_class, seed, gap=1.0):
    """`{program: [(start_s, clip_length_s, pitch, velocity), ...]}`, one clip per note,
    notes laid end to end with `gap` seconds of silence for the release."""
    rng = np.random.default_rng(seed)
    plan, t = {}, 0.0
    for p in programs:
        lo, hi = PROGRAM_RANGE.get(p, FAMILY_RANGE[p // 8])
        notes = []
        for _ in range(clips_per_class):
            length = float(rng.uniform(0.5, 2.0))
            notes.append((t, length, int(rng.integers(lo, hi + 1)), int(rng.integers(40, 128))))
            t += length + gap
        plan[p] = notes
    return plan


def render(soundfont, plan, out_dir, tmp, group=12):
    """Renders the clips of `plan` with `soundfont` into `out_dir/<program name>/`
    (FluidSynth, no reverb or chorus, `group` programs per call)."""
    import soundfile

    programs = sorted(plan)
    written = 0
    for g in range(0, len(programs), group):
        chunk = programs[g : g + group]
        t0 = plan[chunk[0]][0][0]
        blocks = [(p, [(s - t0, max(n - 0.2, 0.1), pitch, v) for s, n, pitch, v in plan[p]]) for p in chunk]
        mid, wav = os.path.join(tmp, "notes.mid"), os.path.join(tmp, "notes.wav")
        with open(mid, "wb") as f:
            f.write(midi_file(blocks))
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(SAMPLE_RATE)]
        subprocess.run(cmd + ["-T", "wav", "-F", wav, soundfont, mid], check=True, capture_output=True)
        audio, sr = soundfile.read(wav, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        for p in chunk:
            for i, (start, length, pitch, velocity) in enumerate(plan[p]):
                a = int(round((start - t0) * sr))
                clip = audio[a : a + int(round(length * sr))]
                if clip.size == 0 or np.abs(clip).max() < 1e-3:
                    continue  # a pitch the soundfont has no sample for
                name = f"{GM_PROGRAMS[p]}_{i:03d}_n{pitch}_v{velocity}.wav"
                write_wav(os.path.join(out_dir, f"{p:03d}_{GM_PROGRAMS[p]}", name), clip, sr)
                written += 1
    return written


def instruments(args):
    if shutil.which("fluidsynth") is None:
        fail(
            "fluidsynth not found (Debian: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont)."
        )
    for sf in (args.soundfont, args.heldout_soundfont):
        if not os.path.isfile(sf):
            fail(
                f"soundfont {sf!r} not found (Debian: apt-get install fluid-soundfont-gm timgm6mb-soundfont)."
            )
    if os.path.realpath(args.soundfont) == os.path.realpath(args.heldout_soundfont):
        print("warning: the held-out soundfont is the training one", file=sys.stderr)
    train, heldout = split_classes(list(range(len(GM_PROGRAMS))), args.seed)
    plan_train = note_plan(train, args.clips_per_class, args.seed + 1)
    plan_heldout = note_plan(heldout, args.heldout_clips_per_class, args.seed + 2)
    with tempfile.TemporaryDirectory() as tmp:
        n = render(args.soundfont, plan_train, os.path.join(args.out, "train"), tmp)
        print(f"train: {n} clips of {len(train)} programs ({os.path.basename(args.soundfont)})")
        n = render(args.heldout_soundfont, plan_heldout, os.path.join(args.out, "heldout"), tmp)
        print(f"heldout: {n} clips of {len(heldout)} programs ({os.path.basename(args.heldout_soundfont)})")
        if not args.no_same:
            n = render(args.soundfont, plan_heldout, os.path.join(args.out, "heldout_same"), tmp)
            print(f"heldout_same: {n} clips of {len(heldout)} programs ({os.path.basename(args.soundfont)})")


# ------------------------------------------------------------------------------------ words


def speak(word, voice, speed, pitch, tmp):
    """One espeak-ng utterance as 16 kHz float32 samples (leading silence trimmed)."""
    import soundfile
    from scipy.signal import resample_poly

    wav = os.path.join(tmp, "word.wav")
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", wav, word]
    subprocess.run(cmd, check=True, capture_output=True)
    y, sr = soundfile.read(wav, dtype="float32")
    if sr != SAMPLE_RATE:
        g = np.gcd(sr, SAMPLE_RATE)
        y = resample_poly(y, SAMPLE_RATE // g, sr // g).astype(np.float32)
    loud = np.flatnonzero(np.abs(y) > 0.01 * max(np.abs(y).max(), 1e-9))
    if loud.size:
        y = y[max(loud[0] - 800, 0) : loud[-1] + 1600]
    return y


def words(args):
    if shutil.which("espeak-ng") is None:
        fail("espeak-ng not found (Debian: apt-get install espeak-ng).")
    train, heldout = split_classes(list(WORDS), args.seed)
    rng = np.random.default_rng(args.seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        for split, names in (("train", train), ("heldout", heldout)):
            count = 0
            for word in names:
                for i in range(args.clips_per_class):
                    accent = ACCENTS[rng.integers(len(ACCENTS))]
                    variant = VARIANTS[rng.integers(len(VARIANTS))]
                    speed, pitch = int(rng.integers(110, 231)), int(rng.integers(15, 86))
                    gain = float(10 ** (rng.uniform(-20, -1) / 20))
                    y = speak(word, f"{accent}+{variant}", speed, pitch, tmp)
                    y = gain * y / max(float(np.abs(y).max()), 1e-9)
                    name = f"{word}_{i:03d}_{accent}_{variant}_s{speed}_p{pitch}.wav"
                    write_wav(os.path.join(args.out, split, word, name), y)
                    count += 1
            print(f"{split}: {count} clips of {len(names)} words")


def build_parser():
    parser = argparse.ArgumentParser(prog="python tools/audio_sets.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("instruments", help="General MIDI programs rendered with FluidSynth")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--soundfont", default=FLUIDR3, help=f"training soundfont (default {FLUIDR3})")
    p.add_argument(
        "--heldout-soundfont", default=TIMGM6MB, help=f"held-out classes' soundfont (default {TIMGM6MB})"
    )
    p.add_argument("--clips-per-class", type=int, default=36, help="training clips per program (default 36)")
    p.add_argument("--heldout-clips-per-class", type=int, default=24, help="default 24")
    p.add_argument(
        "--no-same", action="store_true", help="no heldout_same/ (held-out programs, training soundfont)"
    )
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("words", help="English words spoken by espeak-ng")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--clips-per-class", type=int, default=135, help="clips per word (default 135)")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return {"instruments": instruments, "words": words}[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
