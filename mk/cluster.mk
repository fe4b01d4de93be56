# A local Dask cluster for the same targets: `make cluster-up`, then
# `export DASK_SCHEDULER=tcp://127.0.0.1:$(CLUSTER_PORT)` (the Makefile exports it to every
# stage). Several machines: docs/design.md, "Running on several machines (Dask)".

.PHONY: cluster-up cluster-down cluster-status

WORKERS ?= 2
CLUSTER_PORT ?= 8786
CLUSTER_DIR ?= build/cluster

cluster-up: $(INSTALLED) ## start a local Dask scheduler + WORKERS one-thread workers (pids, logs: build/cluster/)
	$(PY) -m stages.cluster up --workers $(WORKERS) --threads 1 --port $(CLUSTER_PORT) --dir $(CLUSTER_DIR) $(if $(GPU_WORKERS),--gpu-resource)
	@echo "next: export DASK_SCHEDULER=tcp://127.0.0.1:$(CLUSTER_PORT)"

cluster-down: ## stop the processes started by cluster-up
	$(PY) -m stages.cluster down --dir $(CLUSTER_DIR)

cluster-status: ## the scheduler's workers and their resources
	$(PY) -m stages.cluster status --dir $(CLUSTER_DIR) $(if $(DASK_SCHEDULER),--address $(DASK_SCHEDULER))
