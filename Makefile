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

# pytest exits 5 when it collected no test; that is not a failure of the product.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check bot training tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) var
