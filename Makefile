# soft-teacher-d2: `make demo` runs the method on the built-in synthetic set,
# `make test` runs the test suite; both install first when needed.
PYTHON ?= python3
DEMO_OUTPUT ?= output/demo
PY ?= 3.12
DIR ?= .wheelhouse

.PHONY: install test demo wheelhouse lint

install:
	$(PYTHON) tools/install.py

test: install
	$(PYTHON) -m pytest -q

demo: install
	$(PYTHON) tools/train_twin.py --config-file configs/shapes/soft_teacher_demo.yaml --output $(DEMO_OUTPUT)

wheelhouse:
	$(PYTHON) tools/install.py --wheelhouse $(DIR) --python-version $(PY)

lint:
	$(PYTHON) -m flake8 --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q flake8
	$(PYTHON) -m flake8 soft_teacher tools tests train_net.py
