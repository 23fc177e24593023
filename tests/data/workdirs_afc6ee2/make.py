"""Writes tests/data/workdirs_afc6ee2: workdirs of `python -m train` at commit
afc6ee2 (one finished epoch each), which later code must still resume.

    python tests/data/workdirs_afc6ee2/make.py tests/data/workdirs_afc6ee2
"""
import pathlib
import shutil
import subprocess
import sys
RUNS = {
  'sgd_momentum_resnet8': ['--config.model_kwargs.act=gelu', '--config.momentum=0.9',
                             '--config.train_subset=320'],
  'autodrop_mlp': ['--config.model=mlp', '--config.model_kwargs.hidden=(16,)',
                     '--config.optimizer=autodrop',
                     '--config.momentum=0.9'],
}

def main(out):
  for name, flags in RUNS.items():
    wd = out / name
    shutil.rmtree(wd, ignore_errors=True)
    cmd = [sys.executable, '-m', 'train', f'--workdir={wd}', *(['--config=train/configs/default.py:constant'] if 'autodrop' in name else []), '--config.num_epochs=1',
           '--config.progress=False', *flags]
    subprocess.run(cmd, check=True)


if __name__ == '__main__':
  main(pathlib.Path(sys.argv[1]))
