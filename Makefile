# Two commands matter: `make run` (the main job on the embedded defaults) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# Real peers the lab tests start on loopback, the libraries the codecs load, and what Qt's
# offscreen platform loads for the desktop window (GL/EGL, xkbcommon, fontconfig, D-Bus, a font);
# PortAudio for the agent's sound devices; the web phone's tests drive Debian's chromium
# (headless, through Playwright). Node and npm build the web phone's JsSIP bundle: Debian's
# nodejs and npm only where no npm is on the PATH (a Node.js from elsewhere, NodeSource's for
# one, carries its own npm and conflicts with Debian's npm package).
APT_PACKAGES := sip-tester baresip-core tshark kamailio libopus0 libspeexdsp1 gcc libc6-dev espeak-ng faketime mosquitto libportaudio2 \
                libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core \
                chromium chromium-driver
NODE_PACKAGES := nodejs npm
NATIVE_SRC   := $(wildcard native/src/*.c native/src/*.h) native/build_native.py

.PHONY: run test venv webphone system-deps lab-deps lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml setup.py $(NATIVE_SRC)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[test,bench,desktop]'
	touch $@

venv: $(VENV)/.installed webphone

# The web phone's SIP stack: JsSIP at the version package-lock.json pins, from the npm registry,
# bundled by esbuild into one file the edge serves at /jssip.js (never committed, never fetched
# from a CDN by the browser). Without npm the edge still runs and answers /jssip.js with 503.
WEBPHONE := softphone/webphone
webphone: $(WEBPHONE)/dist/jssip.js

$(WEBPHONE)/dist/jssip.js: $(WEBPHONE)/package-lock.json $(WEBPHONE)/entry.js
	@if command -v npm >/dev/null && command -v node >/dev/null; then \
	  cd $(WEBPHONE) && npm ci --no-audit --no-fund \
	  && npx esbuild entry.js --bundle --minify --format=iife --outfile=dist/jssip.js; \
	else \
	  echo "npm not found: the web phone's JsSIP bundle is not built (the page at / will say so;"; \
	  echo "  on Debian: apt-get install nodejs npm, then make webphone)"; \
	fi

# The edge on the embedded defaults (configs/edge.toml): loopback, SIP 5060 udp+tcp, TLS 5061,
# RTP 20000-22000, demo users 1001-1004, echo 600, tone 601. Ctrl-C stops it cleanly.
run: venv
	$(VENV)/bin/softphone edge

# A real pjsip phone for the lab tests: the pjsua2-python wheel pins its Python versions, so it
# lives in a venv of its own (the tests skip, saying why, when it cannot be installed).
PJ_VENV := .venv-pj
$(PJ_VENV)/.installed:
	test -x $(PJ_VENV)/bin/python || $(PYTHON) -m venv $(PJ_VENV)
	$(PJ_VENV)/bin/python -m pip --disable-pip-version-check -q install pjsua2-python \
	  && touch $@ || echo "pjsua2-python not installable here: its lab tests will be skipped"

lab-deps: $(PJ_VENV)/.installed

# Installs the real peers when run as root on Debian (CI is root); otherwise the lab tests
# that need a missing peer are skipped with the reason.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  command -v npm >/dev/null || missing="$$missing $(NODE_PACKAGES)"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  fi; \
	else echo "not root: skipping system packages ($(APT_PACKAGES))"; fi

lint: venv
	$(VENV)/bin/ruff check softphone policy codecs native tests bench

# mypy needs the one import root on disk: a tree of symlinks mirrors the package-dir mapping.
typecheck: venv
	rm -rf build/typecheck && mkdir -p build/typecheck/softphone
	for f in softphone/*; do ln -s ../../../$$f build/typecheck/softphone/; done
	ln -s ../../../policy build/typecheck/softphone/policy
	ln -s ../../../codecs build/typecheck/softphone/codecs
	ln -s ../../../native build/typecheck/softphone/native
	cd build/typecheck && ../../$(VENV)/bin/mypy -p softphone

pytest: venv
	$(VENV)/bin/pytest

test: system-deps venv lab-deps lint typecheck pytest

# The native tests again on a -fsanitize=address,undefined build (also part of `make pytest`).
.PHONY: sanitize
sanitize: venv
	$(VENV)/bin/pytest tests/native -m sanitize -q

bench: venv
	$(PY) bench/native.py

# SIP parser vs sippy and the naive anchor (a printed table).
bench-sip: venv
	$(PY) bench/sip.py

clean:
	rm -rf $(VENV) $(PJ_VENV) build *.egg-info native/_native*.so $(WEBPHONE)/dist $(WEBPHONE)/node_modules
