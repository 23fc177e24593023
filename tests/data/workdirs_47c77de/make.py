"""Writes tests/data/workdirs_47c77de: two-epoch workdirs of `python -m train`
and `python -m train.meta_train` at commit 47c77de, which later code must
resume to the same bits. Each keeps the whole run's metrics.jsonl but only
its first epoch's checkpoint, as if stopped during the second epoch.

    python tests/data/workdirs_47c77de/make.py tests/data/workdirs_47c77de
"""
import pathlib
import shutil
import subprocess
import sys

MLP = ['--config.model=mlp', '--config.model_kwargs.hidden=(16,)',
       '--config.num_epochs=2', '--config.progress=False']
RUNS = {
    'plrs_mlp': ['train', '--config.momentum=0.9', '--config.batch_size=64',
                 '--config.log_every_steps=5', '--config.keep_checkpoints=2',
                 *MLP],
    'meta_train_mlp': ['train.meta_train', '--config.batch_size=128',
                       '--config.num_meta=100', '--config.meta_batch_size=100',
                       '--config.t_val=4', '--config.snapshot_epochs=(1,2)',
                       '--config.log_every_steps=3', *MLP],
}


def main(out):
  for name, (program, *flags) in RUNS.items():
    workdir = out / name
    shutil.rmtree(workdir, ignore_errors=True)
    subprocess.run([sys.executable, '-m', program, f'--workdir={workdir}',
                    *flags], check=True)
    last = max(int(p.name) for p in (workdir / 'checkpoints').iterdir())
    shutil.rmtree(workdir / 'checkpoints' / str(last))
    for written_at_the_end in ('run.png', 'meta_train.png', 'mlr_snet.npz'):
      (workdir / written_at_the_end).unlink(missing_ok=True)


if __name__ == '__main__':
  main(pathlib.Path(sys.argv[1]).absolute())
