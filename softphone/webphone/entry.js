// The one place the page's SIP stack comes from: JsSIP from npm (version pinned in
// package-lock.json), bundled by esbuild into dist/jssip.js (make webphone).
import JsSIP from "jssip";

window.JsSIP = JsSIP;
