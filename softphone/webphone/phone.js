// The web phone: a page served by the edge, SIP over WebSocket (RFC 7118) to /ws through
// JsSIP (bundled from npm into /jssip.js), audio through the browser's WebRTC.
//
// What the person sees is kept in `view` and drawn by `render()`; JsSIP's events only change
// that state. `window.phone` gives the tests what they read: state(), remoteTone(),
// lastReason().
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const STORE_KEY = "webphone.account";
  const RECOVERY_MIN_S = 2;
  const RECOVERY_MAX_S = 30;
  // the text of the guard's R-EMERG-6 Warning (configs/policy.toml `emergency-unavailable`)
  const EMERGENCY_UNAVAILABLE = /emergency calls are not available/i;
  // the edge's recording state, sent in a SIP INFO to web phones (softphone/edge/notices.py)
  const RECORDING_TYPE = "application/vnd.softphone.recording";

  const view = {
    registration: "signed-out", // signed-out, connecting, registering, registered, failed, reconnecting
    registrationText: "signed out",
    regWarnings: [],
    emergency: "unknown", // unknown, available, unavailable
    emergencyLocation: "",
    call: "idle", // idle, calling, ringing, incoming, in-call, ended, failed
    callText: "idle",
    recording: false,
    keysHeard: "", // keys the other party pressed in this call (SIP INFO dtmf-relay)
    muted: false,
    held: false,
    reason: "",
    answeredAt: 0,
  };

  let ua = null;
  let session = null;
  let signingOut = false;
  let reconnectTimer = null;
  let audioCtx = null;
  let remoteAnalyser = null;
  let localAnalyser = null;
  let localSource = null;
  let testStream = null;
  let meterTimer = null;
  let callTimer = null;

  // ------------------------------------------------------------------ numbers

  // What a person types or pastes made dialable, as the desktop app does
  // (softphone/desktop/numbers.py): "+33 (0)1 23-45.67 89" -> "+33123456789", 00 -> +,
  // tel:/sip: schemes and hosts dropped, feature codes (*21#) and sip:name@host kept.
  function cleanNumber(text) {
    const raw = String(text).trim();
    if (!raw) return { error: "nothing to dial" };
    if (/^sips?:[A-Za-z][A-Za-z0-9._-]*@[A-Za-z0-9.\-[\]:]+$/.test(raw)) return { number: raw };
    if (/^[0-9]*[*#][0-9*#]*$/.test(raw)) return { number: raw };
    let s = raw.replace(/^(?:sips?|tel):/i, "").split("@")[0].split(";")[0];
    if (s.startsWith("+")) s = s.replace("(0)", "");
    s = s.replace(/[\s\-.()/]/g, "");
    if (!/^\+?[0-9]{1,20}$/.test(s)) return { error: `not a telephone number: "${raw}"` };
    if (s.startsWith("00") && s.length > 4) s = "+" + s.slice(2);
    return { number: s };
  }

  // ------------------------------------------------------------------ SIP headers in words

  // The quoted texts of a message's Warning headers (RFC 3261 §20.43: `399 host "text"`).
  function warningTexts(message) {
    if (!message || typeof message.getHeaders !== "function") return [];
    const out = [];
    for (const value of message.getHeaders("Warning")) {
      const re = /\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"/g;
      let m;
      while ((m = re.exec(value)) !== null) out.push(m[1].replace(/\\(.)/g, "$1"));
    }
    return out;
  }

  // `X-Emergency: available; location="..."` from the registrar's 200 OK.
  function emergencyHeader(message) {
    if (!message || typeof message.getHeader !== "function") return null;
    const value = message.getHeader("X-Emergency");
    if (!value) return null;
    const m = /location="((?:[^"\\]|\\.)*)"/.exec(value);
    return {
      available: /^\s*available\b/i.test(value),
      location: m ? m[1].replace(/\\(.)/g, "$1") : "",
    };
  }

  const CAUSES = {
    Busy: "the number is busy",
    Rejected: "the call was refused",
    Redirected: "the call was redirected",
    Unavailable: "the number cannot be reached now",
    "Not Found": "no such number",
    "Address Incomplete": "the number is incomplete",
    "Incompatible SDP": "no common audio format",
    "Missing SDP": "the answer had no audio description",
    "Authentication Error": "wrong extension or password",
    Canceled: "cancelled",
    "No Answer": "no answer",
    Expires: "no answer in time",
    "Connection Error": "the connection to the server failed",
    "Request Timeout": "the server did not answer",
    "SIP Failure Code": "the call failed",
    "User Denied Media Access": "the microphone is not allowed on this page",
    "WebRTC Error": "the browser could not set up the audio",
    "RTP Timeout": "the audio stopped",
    "Bad Media Description": "the audio description was not understood",
  };

  function inWords(cause, message) {
    const parts = [];
    if (message && message.status_code) {
      parts.push(`${message.status_code} ${message.reason_phrase || ""}`.trim());
    }
    const words = CAUSES[cause] || (cause ? String(cause).toLowerCase() : "");
    const warnings = warningTexts(message);
    let text = words;
    if (parts.length) text += ` (${parts[0]})`;
    if (warnings.length) text += `: ${warnings.join(" ")}`;
    return text.trim();
  }

  // ------------------------------------------------------------------ drawing

  function fmtTime(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }

  function render() {
    const reg = $("reg-state");
    reg.textContent = view.registrationText;
    reg.dataset.state = view.registration;
    const signedIn = ua !== null; // after a refused password the form is back, with the reason
    $("signin").hidden = signedIn;
    $("phone").hidden = !signedIn;

    const list = $("reg-warnings");
    list.replaceChildren(...view.regWarnings.filter((w) => !EMERGENCY_UNAVAILABLE.test(w))
      .map((w) => Object.assign(document.createElement("li"), { textContent: w })));

    const em = $("emergency");
    em.hidden = view.emergency === "unknown";
    em.dataset.state = view.emergency;
    if (view.emergency === "unavailable") {
      em.textContent = "Emergency calls are not available on this line: use a mobile or a landline";
    } else if (view.emergency === "available") {
      em.textContent = "Emergency calls: available" +
        (view.emergencyLocation ? ` — recorded location: ${view.emergencyLocation}` : "");
    }

    const active = session !== null;
    const inCall = view.call === "in-call";
    $("call-panel").dataset.state = view.call;
    $("call-state").textContent = view.callText;
    $("rec").hidden = !(active && view.recording);
    $("keys-heard").hidden = !(active && view.keysHeard);
    $("keys-heard").textContent = `keys: ${view.keysHeard}`;
    $("call-timer").hidden = !inCall;
    $("reason").textContent = view.reason;
    $("incoming").hidden = view.call !== "incoming";
    $("call").disabled = active || view.registration !== "registered";
    $("hangup").disabled = !active || view.call === "incoming";
    $("mute").disabled = !inCall;
    $("hold").disabled = !inCall;
    $("mute").setAttribute("aria-pressed", String(view.muted));
    $("mute").textContent = view.muted ? "Unmute" : "Mute";
    $("hold").setAttribute("aria-pressed", String(view.held));
    $("hold").textContent = view.held ? "Resume" : "Hold";
  }

  function setRegistration(state, text) {
    view.registration = state;
    view.registrationText = text;
    render();
  }

  function setCall(state, text) {
    view.call = state;
    view.callText = text;
    render();
  }

  function setReason(text) {
    view.reason = text;
    render();
  }

  function problem(text) {
    const p = $("problem");
    p.textContent = text;
    p.hidden = !text;
  }

  // ------------------------------------------------------------------ audio

  function context() {
    if (audioCtx === null) audioCtx = new AudioContext();
    if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
    return audioCtx;
  }

  function analyserFor(stream) {
    const ctx = context();
    const source = ctx.createMediaStreamSource(stream);
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0.2;
    source.connect(analyser); // read only: nothing goes to the speakers from here
    return { source, analyser };
  }

  // The dominant frequency (Hz) an analyser hears, 0 for silence.
  function dominantHz(analyser) {
    if (!analyser) return 0;
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let best = 1;
    for (let i = 2; i < bins.length - 1; i++) if (bins[i] > bins[best]) best = i;
    if (!(bins[best] > -70)) return 0; // dB: nothing above the noise floor
    const [a, b, c] = [bins[best - 1], bins[best], bins[best + 1]];
    const shift = (a - c) / (2 * (a - 2 * b + c)) || 0; // parabolic peak between bins
    return ((best + shift) * analyser.context.sampleRate) / analyser.fftSize;
  }

  function level(analyser) {
    if (!analyser) return 0;
    const samples = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    const rms = Math.sqrt(sum / samples.length);
    const db = 20 * Math.log10(rms + 1e-9); // -60 dB .. 0 dB on the meter
    return Math.min(1, Math.max(0, (db + 60) / 60));
  }

  function startMeter() {
    if (meterTimer === null) {
      meterTimer = setInterval(() => { $("level").value = level(localAnalyser); }, 100);
    }
  }

  function stopMeter() {
    if (meterTimer !== null && !testStream && !session) {
      clearInterval(meterTimer);
      meterTimer = null;
      $("level").value = 0;
    }
  }

  function meterOn(stream) {
    if (localSource) localSource.disconnect();
    const { source, analyser } = analyserFor(stream);
    localSource = source;
    localAnalyser = analyser;
    startMeter();
  }

  function micConstraints() {
    const id = $("mic").value;
    return { audio: id ? { deviceId: { exact: id } } : true, video: false };
  }

  async function refreshDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    let devices = await navigator.mediaDevices.enumerateDevices();
    if (!devices.some((d) => d.kind === "audioinput" && d.label)) {
      // labels come with the permission: ask once, let the stream go at once
      try {
        const s = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
        s.getTracks().forEach((t) => t.stop());
        devices = await navigator.mediaDevices.enumerateDevices();
      } catch (err) {
        problem(`The microphone is not available: ${err.message || err.name}`);
      }
    }
    fill($("mic"), devices.filter((d) => d.kind === "audioinput"), "microphone");
    const outputs = devices.filter((d) => d.kind === "audiooutput");
    const canChoose = typeof HTMLMediaElement.prototype.setSinkId === "function";
    fill($("speaker"), outputs, "speaker");
    $("speaker").disabled = !canChoose;
    $("speaker-note").hidden = canChoose;
  }

  function fill(select, devices, what) {
    const keep = select.value;
    const options = devices.map((d, i) => {
      const o = document.createElement("option");
      o.value = d.deviceId;
      o.textContent = d.label || `${what} ${i + 1}`;
      return o;
    });
    if (!options.length) {
      options.push(Object.assign(document.createElement("option"), { value: "", textContent: `default ${what}` }));
    }
    select.replaceChildren(...options);
    if (devices.some((d) => d.deviceId === keep)) select.value = keep;
  }

  async function chooseSpeaker() {
    const audio = $("remote-audio");
    if (typeof audio.setSinkId !== "function") return;
    try {
      await audio.setSinkId($("speaker").value);
    } catch (err) {
      problem(`That speaker cannot be used: ${err.message || err.name}`);
    }
  }

  async function toggleMicTest() {
    if (testStream) {
      testStream.getTracks().forEach((t) => t.stop());
      testStream = null;
      $("mic-test").setAttribute("aria-pressed", "false");
      stopMeter();
      return;
    }
    try {
      testStream = await navigator.mediaDevices.getUserMedia(micConstraints());
      $("mic-test").setAttribute("aria-pressed", "true");
      meterOn(testStream);
    } catch (err) {
      problem(`The microphone is not available: ${err.message || err.name}`);
    }
  }

  // ------------------------------------------------------------------ registration

  function wsUrl() {
    return (location.protocol === "https:" ? "wss" : "ws") + "://" + location.host + "/ws";
  }

  function signIn(ext, password, domain) {
    if (typeof window.JsSIP === "undefined") {
      problem("The phone's SIP library is not installed on this server (jssip.js): " +
              "the operator builds it with `make webphone`.");
      return;
    }
    problem("");
    signingOut = false;
    context(); // created in the click: browsers let audio start from a user's gesture
    const socket = new window.JsSIP.WebSocketInterface(wsUrl());
    ua = new window.JsSIP.UA({
      sockets: [socket],
      uri: `sip:${ext}@${domain}`,
      authorization_user: ext,
      password,
      register: true,
      register_expires: 300,
      session_timers: false,
      connection_recovery_min_interval: RECOVERY_MIN_S,
      connection_recovery_max_interval: RECOVERY_MAX_S,
      user_agent: `softphone-webphone JsSIP/${window.JsSIP.version}`,
    });
    $("account-name").textContent = `${ext}@${domain}`;
    let attempts = 0;
    ua.on("connecting", () => {
      if (view.registration !== "reconnecting") setRegistration("connecting", "connecting…");
    });
    ua.on("connected", () => {
      attempts = 0;
      clearInterval(reconnectTimer);
      setRegistration("registering", "registering…");
    });
    ua.on("disconnected", () => {
      if (signingOut || ua === null) return;
      // JsSIP tries again after a random wait of at most 2^attempt s (min and max above)
      attempts += 1;
      const bound = Math.min(RECOVERY_MAX_S, Math.max(RECOVERY_MIN_S, 2 ** attempts + 1));
      const until = Date.now() + bound * 1000;
      clearInterval(reconnectTimer);
      const tick = () => {
        const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
        setRegistration("reconnecting", `connection lost: reconnecting in ${left} s at most`);
      };
      tick();
      reconnectTimer = setInterval(tick, 1000);
    });
    ua.on("registered", (e) => {
      const warnings = warningTexts(e.response);
      view.regWarnings = warnings;
      const em = emergencyHeader(e.response);
      if (warnings.some((w) => EMERGENCY_UNAVAILABLE.test(w))) {
        view.emergency = "unavailable";
        view.emergencyLocation = "";
      } else {
        view.emergency = "available";
        view.emergencyLocation = em && em.available ? em.location : "";
      }
      setRegistration("registered", `registered as ${ext}`);
      refreshDevices().catch(() => {});
    });
    ua.on("unregistered", () => {
      if (!signingOut) setRegistration("registering", "registration lost: registering again…");
    });
    ua.on("registrationFailed", (e) => {
      const text = inWords(e.cause, e.response);
      if (e.cause === "Authentication Error" || (e.response && e.response.status_code === 403)) {
        // trying again with the same password would only lock the address out: back to the form
        stop();
        problem(`Sign-in failed: ${text}`);
      }
      view.reason = `registration failed: ${text}`;
      setRegistration("failed", `registration failed: ${text}`);
    });
    ua.on("newRTCSession", (e) => onSession(e.session, e.originator));
    ua.start();
  }

  function stop() {
    signingOut = true;
    clearInterval(reconnectTimer);
    if (session) {
      try { session.terminate(); } catch (_) { /* already ending */ }
    }
    if (ua) {
      const old = ua;
      ua = null;
      old.stop();
    }
  }

  function signOut() {
    stop();
    view.regWarnings = [];
    view.emergency = "unknown";
    setRegistration("signed-out", "signed out");
  }

  // ------------------------------------------------------------------ calls

  const PC_CONFIG = { iceServers: [] }; // the edge terminates the media: no STUN/TURN needed
  const ICE_GATHER_MS = 300; // candidate gathering ends this long after the first candidate

  function call() {
    if (!ua || session) return;
    const cleaned = cleanNumber($("number").value);
    if (cleaned.error) {
      setReason(`Cannot call: ${cleaned.error}`);
      return;
    }
    $("number").value = cleaned.number;
    view.reason = "";
    const domain = $("domain").value.trim();
    const target = cleaned.number.startsWith("sip") ? cleaned.number : `sip:${cleaned.number}@${domain}`;
    view.lastTarget = target;
    try {
      ua.call(target, {
        mediaConstraints: micConstraints(),
        pcConfig: PC_CONFIG,
        rtcOfferConstraints: { offerToReceiveAudio: true, offerToReceiveVideo: false },
      });
    } catch (err) {
      setReason(`Cannot call: ${err.message || err}`);
    }
  }

  function onSession(s, originator) {
    if (session !== null) {
      // one call at a time (the terms' one channel per user): the second caller hears busy
      if (originator === "remote") s.terminate({ status_code: 486, reason_phrase: "Busy Here" });
      return;
    }
    session = s;
    view.recording = false;
    view.muted = false;
    view.held = false;
    if (originator === "remote") {
      const who = s.remote_identity;
      const name = (who.display_name || who.uri.user || "unknown").trim();
      const number = who.uri.user && who.display_name ? ` (${who.uri.user})` : "";
      $("incoming-name").textContent = name + number;
      view.reason = "";
      setCall("incoming", `incoming call from ${name}${number}`);
    } else {
      setCall("calling", `calling ${s.remote_identity.uri.user || ""}…`);
    }
    if (s.connection) watchPeer(s.connection);
    s.on("peerconnection", (e) => watchPeer(e.peerconnection));
    // the edge answers with a host candidate and needs no more than ours: the INVITE (or
    // the 200) leaves ICE_GATHER_MS after the first candidate, not when the browser has
    // finished trying every interface
    let iceReady = null;
    s.on("icecandidate", (e) => {
      if (iceReady === null) iceReady = setTimeout(e.ready, ICE_GATHER_MS);
    });
    s.on("progress", () => {
      if (originator === "local") setCall("ringing", "ringing…");
    });
    s.on("accepted", (e) => {
      const warnings = warningTexts(e.response);
      if (warnings.length) setReason(warnings.join(" "));
    });
    s.on("confirmed", () => {
      view.answeredAt = Date.now();
      setCall("in-call", "in call");
      clearInterval(callTimer);
      callTimer = setInterval(() => {
        $("call-timer").textContent = fmtTime((Date.now() - view.answeredAt) / 1000);
      }, 250);
      $("call-timer").textContent = "00:00";
      const local = s.connection && s.connection.getSenders()
        .map((x) => x.track).filter((t) => t && t.kind === "audio");
      if (local && local.length) meterOn(new MediaStream(local));
    });
    s.on("ended", (e) => {
      const by = e.originator === "remote" ? "the other party hung up" : "call ended";
      finish("ended", e.cause === "Terminated" || e.cause === "BYE" ? by : `${by} (${inWords(e.cause, e.message)})`);
    });
    s.on("failed", (e) => {
      const text = inWords(e.cause, e.message);
      if (e.originator === "local" && (e.cause === "Canceled" || e.cause === "Rejected")) {
        // we cancelled our call or rejected theirs: nothing went wrong
        finish("ended", originator === "remote" ? "call rejected" : "cancelled");
      } else if (originator === "remote" && e.cause === "Canceled") {
        finish("ended", `missed call from ${$("incoming-name").textContent}`);
      } else {
        finish("failed", `call failed: ${text}`);
        setReason(`Call failed: ${text}`);
      }
    });
    s.on("muted", () => { view.muted = true; render(); });
    s.on("unmuted", () => { view.muted = false; render(); });
    s.on("hold", (e) => { if (e.originator === "local") { view.held = true; render(); } });
    s.on("unhold", (e) => { if (e.originator === "local") { view.held = false; render(); } });
    s.on("newDTMF", (e) => {
      if (e.originator !== "remote") return;
      view.keysHeard = (view.keysHeard + e.dtmf.tone).slice(-16);
      render();
    });
    s.on("newInfo", (e) => {
      if (e.originator !== "remote" || e.info.contentType !== RECORDING_TYPE) return;
      const fields = Object.fromEntries(String(e.info.body || "").split(/\r?\n/)
        .map((l) => l.split("=").map((x) => x.trim())).filter((kv) => kv.length === 2));
      view.recording = fields.state === "on";
      render();
    });
  }

  function watchPeer(pc) {
    pc.addEventListener("track", (ev) => {
      if (ev.track.kind !== "audio") return;
      const stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      const audio = $("remote-audio");
      audio.srcObject = stream; // Chrome feeds WebAudio from a remote stream only once an element plays it
      audio.play().catch(() => {});
      chooseSpeaker();
      remoteAnalyser = analyserFor(stream).analyser;
    });
  }

  function finish(state, text) {
    session = null;
    clearInterval(callTimer);
    view.recording = false;
    view.keysHeard = "";
    view.muted = false;
    view.held = false;
    remoteAnalyser = null;
    setCall(state, text);
    stopMeter();
    $("remote-audio").srcObject = null;
  }

  function answer() {
    if (!session || view.call !== "incoming") return;
    session.answer({ mediaConstraints: micConstraints(), pcConfig: PC_CONFIG });
    setCall("answering", "answering…");
  }

  function hangUp() {
    if (!session) return;
    if (view.call === "incoming") {
      session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
    } else {
      session.terminate();
    }
  }

  function dtmf(key) {
    if (!session || view.call !== "in-call") return false;
    session.sendDTMF(key, { transportType: "INFO", duration: 160, interToneGap: 80 });
    return true;
  }

  function press(key) {
    if (dtmf(key)) return;
    const field = $("number");
    field.value += key;
  }

  function flash(key) {
    const button = document.querySelector(`#pad button[data-key="${CSS.escape(key)}"]`);
    if (!button) return;
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 150);
  }

  // ------------------------------------------------------------------ wiring

  function stored() {
    try {
      return JSON.parse(localStorage.getItem(STORE_KEY) || "null");
    } catch (_) {
      return null;
    }
  }

  function onSubmit(ev) {
    ev.preventDefault();
    const ext = $("ext").value.trim();
    const password = $("password").value;
    const domain = $("domain").value.trim() || location.hostname;
    if (!ext || !password) return;
    if ($("remember").checked) {
      localStorage.setItem(STORE_KEY, JSON.stringify({ ext, password, domain }));
    } else {
      localStorage.removeItem(STORE_KEY);
    }
    signIn(ext, password, domain);
  }

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || $("phone").hidden) return;
    const target = ev.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement;
    const inNumber = target === $("number");
    if (ev.key === "Enter" && (!typing || inNumber)) {
      ev.preventDefault();
      if (view.call === "incoming") answer(); else call();
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      hangUp();
    } else if (/^[0-9*#+]$/.test(ev.key) && (!typing || (inNumber && session !== null))) {
      ev.preventDefault();
      flash(ev.key);
      press(ev.key);
    } else if (ev.key === "Backspace" && !typing) {
      ev.preventDefault();
      $("number").value = $("number").value.slice(0, -1);
    }
  }

  function onPaste(ev) {
    const text = (ev.clipboardData || window.clipboardData).getData("text");
    const cleaned = cleanNumber(text);
    ev.preventDefault();
    if (cleaned.error) {
      setReason(`Not pasted: ${cleaned.error}`);
      return;
    }
    $("number").value = cleaned.number;
    setReason("");
  }

  function init() {
    const saved = stored();
    $("domain").value = (saved && saved.domain) || location.hostname;
    if (saved) {
      $("ext").value = saved.ext || "";
      $("password").value = saved.password || "";
      $("remember").checked = true;
    }
    $("signin").addEventListener("submit", onSubmit);
    $("signout").addEventListener("click", signOut);
    $("call").addEventListener("click", call);
    $("hangup").addEventListener("click", hangUp);
    $("answer").addEventListener("click", answer);
    $("reject").addEventListener("click", hangUp);
    $("mute").addEventListener("click", () => {
      if (!session) return;
      if (view.muted) session.unmute({ audio: true }); else session.mute({ audio: true });
    });
    $("hold").addEventListener("click", () => {
      if (!session) return;
      if (view.held) session.unhold(); else session.hold();
    });
    $("backspace").addEventListener("click", () => {
      $("number").value = $("number").value.slice(0, -1);
    });
    $("pad").addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-key]");
      if (button) press(button.dataset.key);
    });
    $("number").addEventListener("paste", onPaste);
    $("speaker").addEventListener("change", chooseSpeaker);
    $("mic-test").addEventListener("click", toggleMicTest);
    if (navigator.mediaDevices) {
      navigator.mediaDevices.addEventListener("devicechange", () => refreshDevices().catch(() => {}));
    }
    document.addEventListener("keydown", onKey);
    if (typeof window.JsSIP === "undefined") {
      problem("The phone's SIP library is not installed on this server (jssip.js): " +
              "the operator builds it with `make webphone`.");
      $("signin-button").disabled = true;
    }
    render();
    if (saved && saved.ext && saved.password && typeof window.JsSIP !== "undefined") {
      signIn(saved.ext, saved.password, $("domain").value);
    }
  }

  window.phone = {
    state: () => ({
      registration: view.registration,
      call: view.call,
      recording: view.recording,
      keysHeard: view.keysHeard,
      emergency: view.emergency,
      muted: view.muted,
      held: view.held,
    }),
    remoteTone: () => dominantHz(remoteAnalyser),
    localLevel: () => level(localAnalyser),
    lastReason: () => view.reason,
    lastTarget: () => view.lastTarget || "",
    clean: (text) => cleanNumber(text),
    // the edge's description of the call in progress (its ICE candidates): "" when none
    remoteSdp: () => {
      const pc = session && session.connection;
      return pc && pc.remoteDescription ? pc.remoteDescription.sdp : "";
    },
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
