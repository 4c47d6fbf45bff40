"""`rali-edge demo`: the whole chain on synthetic data, on the CPU, in minutes."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from rali_edge.cli._common import console, err_console, friendly_errors

WHAT_NEXT = """\
[bold]What next[/]
  - Train on real data on a GPU with the paper's settings (CLIP ViT-L/14-336):
      rali-edge train --config configs/train/koniq_vitl336.toml
    (several GPUs: accelerate launch -m rali_edge.cli.app train --config ...)
  - Import the official RALI weights:  rali-edge import-official checkpoints/ --out rali-official --trust-pickle
  - Build a TensorRT engine on a Jetson: run the trtexec line written beside the tensorrt-profile ONNX:
      {trtexec}
  - Gate a quantized model in CI:  rali-edge validate ARTIFACT --bundle BUNDLE --meta test.json \\
      --image-root DIR --max-plcc-drop 0.01"""


@friendly_errors
def demo(
    out: Path = typer.Option(Path("rali-demo"), "--out", help="Folder for everything the demo writes."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and fewer steps (1 to 3 minutes on 2 cores)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete an earlier demo run in --out and start over."),
) -> None:
    """Run the whole chain on synthetic data, on the CPU, in minutes.

    Synthetic IQA data -> template reasoning texts (+ a tiny Qwen2.5-VL teacher: GRPO steps and a
    describe pass) -> align a small CLIP, compress, fit -> evaluate -> export ONNX / ORT mobile /
    Core ML, quantize INT8 and FP16, validate drift -> benchmark report. Stages already finished in
    --out are skipped, so an interrupted demo resumes.
    """
    from rali_edge.demo import run_demo

    if fresh and out.exists():
        shutil.rmtree(out)

    def on_stage(stage: str, event: str) -> None:
        if event == "resumed":
            console.print(f"[dim]- {stage}: already done in an earlier run, resumed[/]")
        elif event == "start":
            console.print(f"[bold cyan]> {stage}[/]")

    result = run_demo(out, quick=quick, on_stage=on_stage)
    _print_summary(result)
    failures = result.stages["benchmark"].get("failures", [])
    for failure in failures:
        err_console.print(f"[bold red]FAIL[/] {failure}", highlight=False, soft_wrap=True)
    if failures:   # an export or a run failed: the demo did not do what it shows
        raise typer.Exit(code=1)


def _print_device_preprocess(device: dict[str, dict[str, float | None]]) -> None:
    """dPLCC per artifact when the app prepares the pixels another way (vs float on training pixels)."""
    if not device:
        return
    names = list(next(iter(device.values())))
    console.print("\n[bold]Device-side preprocessing[/]: dPLCC vs the float scorer on the training "
                  "preprocessing (PIL bicubic), test split", highlight=False)
    console.print(f"  {'artifact':<28}" + "".join(f"{n:>15}" for n in names), highlight=False)
    for artifact, by_name in device.items():
        cells = "".join("{:>15}".format("-" if by_name.get(n) is None else f"{by_name[n]:+.4f}") for n in names)
        console.print(f"  {artifact:<28}{cells}", highlight=False)


def _print_summary(result) -> None:
    st = result.stages
    data, ev, teacher = st["data"], st["evaluate"], st["teacher"]
    console.print(f"\n[bold]Synthetic data[/]: {data['n_train']} train / {data['n_test']} test images "
                  f"(no source image in both) in {data['root']}")
    console.print(f"[bold]Reasoning texts[/]: template teacher, seeds {st['texts']['seeds']} -> {st['texts']['triplets']}")
    console.print(f"[bold]Tiny Qwen2.5-VL teacher[/] (random weights): {teacher['grpo_steps']} GRPO steps, "
                  f"{teacher['described']} descriptions ({teacher['malformed']} malformed) -> "
                  f"{teacher['describe_out']}\n  [yellow]its texts are NOT used for training: a random model "
                  "writes noise; the template texts are used[/]")
    console.print(f"[bold]Scorer[/]: {st['train']['bundle']}, aligned in {st['train']['align_precision']}\n  test split ({ev['n']} images, {ev['protocol']}): "
                  f"PLCC {ev['plcc']:.3f}  SRCC {ev['srcc']:.3f}  KRCC {ev['krcc']:.3f}  MAE {ev['mae']:.3f}")
    console.print("\n[bold]Benchmark[/] (test split, vs the float PyTorch scorer)")
    console.print(st["benchmark"]["table"], highlight=False, markup=False)
    _print_device_preprocess(st["benchmark"].get("device_preprocess", {}))
    report_dir = Path(st["benchmark"]["report_dir"])
    console.print(f"\nReports: {report_dir / 'report.html'}, {report_dir / 'report.md'}, {report_dir / 'report.json'}")
    console.print("[bold]Artifacts[/]:")
    for row in st["benchmark"]["rows"]:
        if row.get("artifact"):
            console.print(f"  {row['format']:<10} {row['precision']:<16} {row['artifact']}", highlight=False)
    trtexec = sorted(report_dir.rglob("*trtexec*"))
    console.print(WHAT_NEXT.format(trtexec=trtexec[0] if trtexec else "(see the tensorrt export folder)"))
    if result.resumed:
        console.print(f"[dim]Resumed stages: {', '.join(result.resumed)}[/]")
