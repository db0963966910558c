# celery-chaos-lab: the local lab on one Linux host (root). `make demo` and `make test` are the two entry points.
SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
WORKERS ?= 2
export LAB_WORKERS := $(WORKERS)
# The task broker, redis or rabbitmq (BROKER=rabbitmq make lab): the lab keeps it (.lab/local/broker) until it is
# brought down, so later targets need not repeat it.
BROKER ?=
ifneq ($(BROKER),)
export LAB_BROKER := $(BROKER)
endif
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The Makefile's lab targets are the local lab's (the default inventory would pick Vagrant VMs if any exist).
export ANSIBLE_INVENTORY := $(CURDIR)/inventory/local.yml
PYTEST_ARGS ?=
REPEAT ?= 5

# Debian packages the local lab needs (`make install`, which every target using the local lab runs). The nodes share
# the host's filesystem: the local inventory turns the roles' own package installs off (supervisor, redis-server,
# prometheus and the exporters on a VM or host) and these provide them; gcc, python3-dev and libnetfilter-queue-dev
# build netfilterqueue for the NFQUEUE delay engine.
LAB_APT_PACKAGES := python3 python3-venv python3-dev gcc iproute2 iptables libnetfilter-queue-dev procps psmisc \
	redis-server redis-tools supervisor stress-ng \
	prometheus prometheus-node-exporter prometheus-redis-exporter \
	$(if $(filter rabbitmq,$(BROKER)),rabbitmq-server)
# What the tests need besides (`make test`): chromium renders the report (tests/unit/test_report_browser.py); vagrant,
# vagrant-libvirt and ruby render the Vagrantfile with the libvirt provider (tests/unit/test_vagrantfile.py, no VM is
# made); openssh for the hosts path (tests/lab/test_hosts_over_ssh.py: sshd inside the namespace nodes); rabbitmq-server
# for the RabbitMQ lab tests (tests/lab/test_rabbitmq_lab.py switch the lab to it and back).
TEST_APT_PACKAGES := chromium openssh-server openssh-client vagrant vagrant-libvirt ruby rabbitmq-server

# Install the Debian packages $(1) that are missing (apt-get only when one is).
define apt_install
@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
if [ -n "$$missing" ]; then \
	echo "installing Debian packages:" $$missing; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
fi
endef

.PHONY: help install packages test-packages lab lab-up provision demo experiment study study-seed study-brokers study-sweeps down \
	test test-unit lint bench clean vagrant-packages vagrant-box vagrant-test

help:
	@echo "make demo      install, bring the local lab up, provision it, run a burst of every task kind"
	@echo "make test      install and run the tests (root: includes the local lab tests)"
	@echo "make lab       install, bring the local lab up and provision it (WORKERS=$(WORKERS), BROKER=redis|rabbitmq)"
	@echo "make experiment SCENARIO=experiments/<name>.yml   run an experiment on the lab"
	@echo "make study     the lab's study (experiments/study, REPEAT=$(REPEAT) runs per cell) -> experiments/reference"
	@echo "               QUICK=1: a first look (one run of first and last configurations), not published"
	@echo "make study-seed   the prototype's experiments (experiments/study/seed) -> a part of experiments/reference"
	@echo "make study-brokers   the same faults on Redis and RabbitMQ (experiments/study/brokers) -> a part of it"
	@echo "make study-sweeps    the study's dose-response curves (experiments/study/sweeps) -> reference/sweeps"
	@echo "make down      stop and remove the local lab"
	@echo "make lint      ruff and ansible-lint"
	@echo "make bench     benchmarks (see bench/)"
	@echo "make vagrant-test   the Vagrant lab end to end: box, WORKERS=1 vagrant up, checks, destroy (many minutes)"

install: packages $(VENV)/.installed

packages:
	$(call apt_install,$(LAB_APT_PACKAGES))

test-packages:
	$(call apt_install,$(TEST_APT_PACKAGES))

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[controller,dev]'
	touch $@

lab: install lab-up provision

lab-up:
	$(BIN)/ansible-playbook playbooks/lab-up.yml

provision:
	$(BIN)/ansible-playbook playbooks/site.yml

demo: lab
	$(BIN)/chaoslab demo
	$(BIN)/chaoslab where
	$(BIN)/chaoslab run experiments/demo.yml

experiment: install
	@test -n "$(SCENARIO)" || { echo "usage: make experiment SCENARIO=experiments/<name>.yml"; exit 2; }
	$(BIN)/chaoslab run $(SCENARIO)

# The study: every scenario of experiments/study, each cell REPEAT times; the summaries and the comparison report
# are published into experiments/reference (the committed reference results are made this way).
# QUICK=1: a first look (one run of each scenario's first and last configuration, no null controls, the time around
# each fault shortened), into experiments/results only.
study: lab
ifeq ($(QUICK),1)
	$(BIN)/chaoslab study experiments/study --quick
else
	$(BIN)/chaoslab study experiments/study --repeat $(REPEAT) --publish experiments/reference
endif

# The seed experiments (the prototype's, under its conditions: minutes-long runs), a study of their own published
# into the same reference beside the lab's study (a part of it: each keeps its machine, versions and commit).
study-seed: lab
	$(BIN)/chaoslab study experiments/study/seed --repeat $(REPEAT) --publish experiments/reference

# The broker study: the same faults on Redis and on RabbitMQ (experiments/study/brokers), another part of the same
# reference. The study switches the lab to each cell's broker and gives the lab its own back at the end.
study-brokers: lab
	$(call apt_install,rabbitmq-server)
	$(BIN)/chaoslab study experiments/study/brokers --repeat $(REPEAT) --publish experiments/reference

# The study's sweeps (experiments/study/sweeps): each a curve of runs, one per dose, under early and late
# acknowledgement, published into experiments/reference/sweeps/<sweep> with the table of its knees printed for
# docs/findings.md. A point whose hypothesis does not hold is a finding, not an error: only an error stops it.
SWEEPS := redis-delay packet-loss
study-sweeps: lab
	rm -rf experiments/results/sweeps
	set -e; for sweep in $(SWEEPS); do \
	  code=0; $(BIN)/chaoslab run experiments/study/sweeps/$$sweep.yml --results experiments/results/sweeps \
	    --run-id $$sweep || code=$$?; [ $$code -le 1 ]; \
	  $(BIN)/python -m chaoslab.report.sweep_reference experiments/results/sweeps/$$sweep \
	    experiments/reference/sweeps/$$sweep; \
	done

down: install
	$(BIN)/ansible-playbook playbooks/lab-down.yml

# Unit tests two at a time (they share nothing); the lab tests one after another on the one local lab.
test: install test-packages
	$(BIN)/pytest -n 2 -m "not lab" $(PYTEST_ARGS)
	$(BIN)/pytest -m lab --durations=40 $(PYTEST_ARGS)

test-unit: install test-packages
	$(BIN)/pytest -n 2 -m "not lab" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check app plugins tests bench tools
	$(BIN)/ansible-lint
	$(BIN)/python tools/fault_files.py --check
	$(BIN)/python tools/role_docs.py --check

bench: install
	$(BIN)/python bench/bench_checker.py
	$(BIN)/python bench/bench_loadgen.py
	$(BIN)/python bench/bench_worker.py
	$(BIN)/python bench/bench_lab.py
	$(BIN)/python bench/bench_faults.py
	$(BIN)/python bench/bench_overhead.py
	$(BIN)/python bench/bench_trigger.py

clean: down
	rm -rf $(VENV) .lab

# The Vagrant lab (README, "Virtual machines"). vagrant-test builds an offline libvirt box when Vagrant has none
# named VAGRANT_BOX, brings WORKERS=1 up, provisions, checks services, a netem delay and a worker-kill experiment,
# then destroys the VMs. VAGRANT_DRIVER=kvm where nested KVM works (qemu emulates: about 8x slower).
VAGRANT_BOX ?= chaoslab/bookworm64
VAGRANT_DRIVER ?= qemu
# Certificate authorities the VMs must trust besides Debian's: by default the ones added to this host's store
# (e.g. a TLS-intercepting proxy's between the VMs and PyPI).
LAB_CA_CERTIFICATES ?= $(shell ls /usr/local/share/ca-certificates/*.crt 2>/dev/null | paste -sd:)
export LAB_CA_CERTIFICATES
VAGRANT_APT_PACKAGES := vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils \
	debootstrap extlinux dnsmasq-base tini

# libvirtd runs under tini, a subreaper. qemu daemonizes, so its processes are orphans; where pid 1 does not reap
# them (a container's init), libvirtd's exited capability probe stays a zombie that libvirtd waits on (~30 s per
# call), the probe's result is never cached, and `vagrant up` seems to hang. tini reaps them.
vagrant-packages:
	$(call apt_install,$(VAGRANT_APT_PACKAGES))
	@pgrep -x virtlogd >/dev/null || virtlogd -d
	@pgrep -x libvirtd >/dev/null || (setsid tini -s -- libvirtd >/dev/null 2>&1 &)
	@timeout 60 sh -c 'until virsh -c qemu:///system version >/dev/null 2>&1; do sleep 0.5; done' \
		|| { echo "libvirtd did not answer in 60 s" >&2; exit 1; }

vagrant-box: vagrant-packages
	@vagrant box list | grep -q '^$(VAGRANT_BOX) *(libvirt' \
		|| tools/build-box.sh --driver $(VAGRANT_DRIVER) --name $(VAGRANT_BOX) --add

vagrant-test: install vagrant-box
	LAB_BOX=$(VAGRANT_BOX) LAB_LIBVIRT_DRIVER=$(VAGRANT_DRIVER) ANSIBLE_INVENTORY=$(CURDIR)/inventory/vagrant.yml \
		$(BIN)/pytest tests/vagrant -v -s -p no:cacheprovider $(PYTEST_ARGS)
