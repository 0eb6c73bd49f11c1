// The viewer page's own script (inlined by bids2hub.paper.viewer): load both volumes from
// the inline base64, draw the trace with the mask on three slices through the lesion, say
// ready (window.viewerReady, body[data-viewer]) or show and log the failure.
(async function () {
  const status = document.getElementById("status");
  const settings = JSON.parse(document.getElementById("viewer-settings").textContent);
  function fail(err) {
    const text = "viewer failed: " + (err && err.message ? err.message : String(err));
    status.textContent = text;
    status.className = "error";
    document.body.dataset.viewer = "failed";
    window.viewerError = text;
    console.error(text);
  }
  window.addEventListener("error", (ev) => fail(ev.error || ev.message));
  window.addEventListener("unhandledrejection", (ev) => fail(ev.reason));
  try {
    if (typeof niivue === "undefined") throw new Error("the NiiVue bundle did not load");
    const nv = new niivue.Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: [0.2, 0.8, 1.0, 0.8],
      crosshairWidth: 0.25,
      multiplanarShowRender: niivue.SHOW_RENDER.NEVER,
      multiplanarLayout: niivue.MULTIPLANAR_TYPE.ROW,
      isColorbar: false,
      logLevel: "error",
      loadingText: "loading...",
    });
    await nv.attachTo("gl");
    const text = (id) => document.getElementById(id).textContent.trim();
    const dwi = await niivue.NVImage.loadFromBase64({
      base64: text("dwi-data"), name: settings.dwiName, colormap: "gray",
    });
    const mask = await niivue.NVImage.loadFromBase64({
      base64: text("mask-data"), name: settings.maskName, colormap: "red",
      opacity: 0.7, cal_min: 0.5, cal_max: 1, trustCalMinMax: true,
    });
    nv.addVolume(dwi);
    nv.addVolume(mask);
    if (nv.volumes.length !== 2) {
      throw new Error("expected 2 volumes, NiiVue has " + nv.volumes.length);
    }
    nv.setSliceType(nv.sliceTypeMultiplanar);
    if (settings.centreMM) {
      nv.scene.crosshairPos = nv.mm2frac(settings.centreMM);
    }
    nv.updateGLVolume();
    nv.drawScene();
    // Two frames: the draw above has reached the canvas.
    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
    status.textContent = "";
    window.viewer = nv;
    document.body.dataset.viewer = "ready";
    window.viewerReady = true;
  } catch (err) {
    fail(err);
  }
})();
