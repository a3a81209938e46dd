#!/usr/bin/env bash
# Run HERE (not on the GPU machine): wheels for Zeus and the packages it needs that the GPU image
# lacks, into ./.whl (git-ignored; pass `.whl` in the run tool's `carry` for part `zeus`).
set -eu
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  zeus==0.16.0 amdsmi==7.0.2 annotated-types==0.8.0 docstring_parser==0.18.0 pydantic==2.14.3 \
  pydantic_core==2.50.4 typeguard==4.6.0 typing-inspection==0.4.5 tyro==1.0.17
ls .whl
