"use strict";
// What the publish page (ingest) and the play page (relay) share; both services serve this
// file at /static/livecart-whipwhep.js.
window.LivecartWhipWhep = Object.freeze({
  // Resolves once the peer has gathered its candidates (or after `ms`): the offer carries
  // them all, since neither WHIP nor WHEP sessions here take trickle ICE (PATCH).
  gathered(peer, ms) {
    if (peer.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => peer.iceGatheringState === "complete" && resolve();
      peer.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, ms);
    });
  },

  // The human-readable reason of a refusal: Livecart answers {error, message}.
  async reason(response) {
    try {
      const body = await response.json();
      return body.message || body.error || "";
    } catch {
      return "";
    }
  },
});
