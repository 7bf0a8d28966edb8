# Two commands: `make run` (set up from scratch, index the sample knowledge, start the bot)
# and `make test`. Everything they install is declared in pyproject.toml / scripts/setup.sh.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.supportbot-installed

.PHONY: setup run test lint bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/supportbot index
	$(BIN)/supportbot serve

# The lint (ruff, and mypy over bot/ and training/: [tool.mypy] in pyproject.toml) runs first,
# so CI, which runs `make test`, fails on a type error too.
# pytest exits 5 when it collected no test; that is not a failure of the product.
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check bot training tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) var
