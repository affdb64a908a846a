// faceray's live page: camera (or a picked image or video) -> WebSocket /v1/stream -> faces drawn on a canvas.
// No build step, no dependency, nothing from another origin. State for automated checks: window.faceray.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const MAX_IN_FLIGHT = Math.max(1, Number(params.get("inflight") || 2)); // frames sent and not answered yet
  const MAX_SIDE = 640; // frames are sent at most this wide or high (the detector works at 640)
  const state = (window.faceray = {
    status: "starting", // starting | ready | streaming | idle | camera-denied | no-camera | reconnecting | error
    framesSent: 0,
    framesAnswered: 0,
    dropped: 0, // frames the service answered as dropped (queue or deadline)
    reconnects: 0, // streams reopened after the service or the network ended one unasked
    closed: null, // the last close: {code, reason}
    lastResult: null,
    source: null, // camera | video | image
    message: "",
  });

  const view = document.getElementById("view");
  const context = view.getContext("2d");
  const video = document.getElementById("video");
  const grab = document.createElement("canvas");
  const grabContext = grab.getContext("2d");
  const elements = {
    status: document.getElementById("status"), message: document.getElementById("message"),
    fps: document.getElementById("fps"), latency: document.getElementById("latency"), bars: document.getElementById("bars"),
  };

  let socket = null;
  let backoff = 500;
  let lost = false; // the last stream ended unasked: the next one that opens is a reconnect
  let retry = null; // the pending reconnect timer
  let reopen = false; // the service closed the stream as idle: open a new one with the next frame
  let sentAt = []; // send times of the frames in flight, oldest first (answers come back in order)
  let faces = [];
  let still = null; // the picked image, redrawn with its faces
  let answeredAt = [];
  let latencies = [];
  let stream = null;

  function setStatus(status, message = "") {
    state.status = status;
    state.message = message;
    elements.status.textContent = status;
    elements.status.className = ["camera-denied", "no-camera", "reconnecting", "error"].includes(status) ? "problem" : "";
    elements.message.textContent = message;
  }

  // --- the connection -------------------------------------------------------------------------------------------
  function connect() {
    if (socket && socket.readyState <= WebSocket.OPEN) return; // connecting or open already
    clearTimeout(retry);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/v1/stream");
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      backoff = 500;
      sentAt = [];
      if (lost) state.reconnects += 1;
      lost = false;
      if (["reconnecting", "starting", "idle"].includes(state.status)) {
        setStatus(state.source ? "streaming" : "ready", state.source ? "" : state.message);
      }
      if (still) sendStill();
    };
    socket.onmessage = (event) => answer(JSON.parse(event.data));
    socket.onclose = (event) => closed(event.code, event.reason);
  }

  // Why the stream ended decides what happens next: an idle stream reopens with the next frame, a refusal on policy
  // is said and not retried, anything else (the service restarting, full, a replica lost) is retried with backoff.
  function closed(code, reason) {
    sentAt = [];
    state.closed = { code, reason };
    if (code === 1008 && reason.startsWith("idle")) {
      reopen = true;
      if (state.source) setStatus("idle", "The stream was closed after a while without frames; it reopens with the next one.");
      return;
    }
    if (code === 1008) {
      setStatus("error", `The service refused the stream: ${reason}`);
      return;
    }
    lost = true;
    if (!["camera-denied", "no-camera"].includes(state.status) || state.source) {
      const why = { 1012: "the service is restarting", 1013: "the service is full", 1006: "the connection broke" }[code]
        || `closed with code ${code}`;
      setStatus("reconnecting", `The stream ended (${why}): reconnecting in ${(backoff / 1000).toFixed(1)} s…`);
    }
    retry = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  }

  function answer(result) {
    const sent = sentAt.shift();
    if (sent !== undefined) latencies.push(performance.now() - sent);
    if (latencies.length > 30) latencies.shift();
    if (result.dropped) {
      state.dropped += 1;
      return;
    }
    if (result.error) {
      setStatus("error", `The service could not read a frame: ${result.error}`);
      return;
    }
    state.framesAnswered += 1;
    state.lastResult = result;
    faces = result.faces || [];
    answeredAt.push(performance.now());
    while (answeredAt.length && answeredAt[0] < performance.now() - 2000) answeredAt.shift();
    if (state.status === "error") setStatus("streaming");
    if (still) drawPicture(still, still.naturalWidth, still.naturalHeight);
    showBars();
    showStats();
  }

  // --- sending frames -------------------------------------------------------------------------------------------
  function fit(width, height) {
    const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
    return [Math.round(width * scale), Math.round(height * scale)];
  }

  function send(picture, width, height) {
    if (reopen) { // a frame to send: open a new stream in place of the one the service closed as idle
      reopen = false;
      connect();
    }
    if (!socket || socket.readyState !== WebSocket.OPEN || sentAt.length >= MAX_IN_FLIGHT) return false; // drop, never queue
    [grab.width, grab.height] = fit(width, height);
    grabContext.drawImage(picture, 0, 0, grab.width, grab.height);
    sentAt.push(performance.now());
    grab.toBlob((blob) => {
      if (!blob || socket.readyState !== WebSocket.OPEN) return;
      blob.arrayBuffer().then((bytes) => {
        socket.send(bytes);
        state.framesSent += 1;
      });
    }, "image/jpeg", 0.85);
    return true;
  }

  function sendStill() {
    sentAt = [];
    send(still, still.naturalWidth, still.naturalHeight);
  }

  // --- drawing --------------------------------------------------------------------------------------------------
  function drawPicture(picture, width, height) {
    const [drawWidth, drawHeight] = fit(width, height);
    if (view.width !== drawWidth || view.height !== drawHeight) [view.width, view.height] = [drawWidth, drawHeight];
    context.drawImage(picture, 0, 0, drawWidth, drawHeight);
    drawFaces();
  }

  function label(face) {
    const parts = [];
    if (face.emotion) parts.push(`${face.emotion.label} ${face.emotion.score.toFixed(2)}`);
    if (face.gender) parts.push(`${face.gender.label} ${face.gender.score.toFixed(2)}`);
    return parts.join(" · ");
  }

  // The colours of serve/vision.py's annotated images (GENDER_COLORS there, in BGR).
  const GENDER_COLOURS = { woman: "#ff50b4", man: "#3ca0ff" };
  const UNKNOWN_COLOUR = "#c8c8c8";

  function overlaps(a, b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  }

  // serve/vision.py's place_labels: inside the picture, apart from the labels placed before (largest face first).
  function placeLabel(box, w, h, placed, others) {
    const [x, y, , bh] = box;
    const left = Math.min(Math.max(0, x), Math.max(0, view.width - w));
    const starts = [y - h, y, y + bh];
    // First a place clear of the other labels and faces, then one clear of the other labels only.
    for (const obstacles of [placed.concat(others), placed]) {
      for (const start of starts) {
        let top = Math.min(Math.max(0, start), Math.max(0, view.height - h));
        for (let step = 0; step <= placed.length; step++) {
          const clash = placed.find((rect) => overlaps({ x: left, y: top, w, h }, rect));
          if (!clash) break;
          top = clash.y + clash.h;
        }
        const rect = { x: left, y: top, w, h };
        if (top + h <= view.height && !obstacles.some((other) => overlaps(rect, other))) return rect;
      }
    }
    return { x: left, y: Math.min(Math.max(0, y - h), Math.max(0, view.height - h)), w, h };
  }

  function drawFaces() {
    context.lineWidth = Math.max(2, view.width / 240);
    context.font = `${Math.max(12, Math.round(view.width / 40))}px system-ui, sans-serif`;
    const size = parseInt(context.font, 10) + 6;
    const placed = [];
    faces.forEach((face) => {
      const [x, y, w, h] = face.box; // in the pixels of the frame sent, which are the canvas's
      const colour = GENDER_COLOURS[face.gender && face.gender.label] || UNKNOWN_COLOUR;
      context.strokeStyle = colour;
      context.strokeRect(x, y, w, h);
    });
    const boxes = faces.map((face) => ({ x: face.box[0], y: face.box[1], w: face.box[2], h: face.box[3] }));
    faces.forEach((face, index) => {
      const text = label(face);
      const others = boxes.filter((_, other) => other !== index);
      const rect = placeLabel(face.box, context.measureText(text).width + 8, size, placed, others);
      placed.push(rect);
      context.fillStyle = GENDER_COLOURS[face.gender && face.gender.label] || UNKNOWN_COLOUR;
      context.fillRect(rect.x, rect.y, rect.w, rect.h);
      context.fillStyle = "#000";
      context.fillText(text, rect.x + 4, rect.y + size - 6);
    });
  }

  function showBars() {
    const face = faces[0]; // the service answers the largest face first
    if (!face) {
      elements.bars.innerHTML = '<p class="hint">No face in the last answer.</p>';
      return;
    }
    const rows = [];
    for (const task of ["emotion", "gender"]) {
      if (!face[task]) continue;
      for (const [name, score] of Object.entries(face[task].scores)) {
        const top = name === face[task].label ? " top" : "";
        rows.push(`<div class="bar${top}"><span>${name}</span><div class="track"><div class="fill" ` +
                  `style="width:${(100 * score).toFixed(1)}%"></div></div><span>${score.toFixed(2)}</span></div>`);
      }
    }
    elements.bars.innerHTML = rows.join("");
  }

  function showStats() {
    const seconds = answeredAt.length > 1 ? (answeredAt[answeredAt.length - 1] - answeredAt[0]) / 1000 : 0;
    elements.fps.textContent = seconds > 0 ? `${((answeredAt.length - 1) / seconds).toFixed(1)} frames/s` : "– frames/s";
    const mean = latencies.length ? latencies.reduce((a, b) => a + b, 0) / latencies.length : 0;
    elements.latency.textContent = latencies.length ? `${mean.toFixed(0)} ms` : "– ms";
  }

  // --- sources --------------------------------------------------------------------------------------------------
  function onVideoFrame() {
    if (state.source !== "camera" && state.source !== "video") return;
    if (video.readyState >= 2 && video.videoWidth) {
      drawPicture(video, video.videoWidth, video.videoHeight);
      send(video, video.videoWidth, video.videoHeight);
    }
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onVideoFrame); // the camera's pace
    else requestAnimationFrame(onVideoFrame);
  }

  function stopSources() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    still = null;
    faces = [];
    video.pause();
    video.removeAttribute("src");
    video.srcObject = null;
  }

  async function useCamera() {
    stopSources();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      state.source = null;
      setStatus("no-camera", "This page has no camera access: browsers give the camera only to https or " +
                "localhost pages. Pick an image or a video file instead.");
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (problem) {
      state.source = null;
      if (problem.name === "NotAllowedError" || problem.name === "SecurityError") {
        setStatus("camera-denied", "The camera was refused. Allow it for this page in the browser's site settings, " +
                  "or pick an image or a video file.");
      } else {
        setStatus("no-camera", `No camera could be opened (${problem.name}). Pick an image or a video file instead.`);
      }
      return;
    }
    video.srcObject = stream;
    await video.play();
    state.source = "camera";
    setStatus(socket && socket.readyState === WebSocket.OPEN ? "streaming" : "reconnecting");
    onVideoFrame();
  }

  function useFile(file) {
    if (!file) return;
    stopSources();
    const url = URL.createObjectURL(file);
    if (file.type.startsWith("video/")) {
      video.src = url;
      video.loop = true;
      video.play().then(() => {
        state.source = "video";
        setStatus("streaming");
        onVideoFrame();
      }, () => setStatus("error", `The browser cannot play ${file.name}.`));
    } else {
      const picture = new Image();
      picture.onload = () => {
        state.source = "image";
        still = picture;
        setStatus("streaming");
        drawPicture(picture, picture.naturalWidth, picture.naturalHeight);
        sendStill();
      };
      picture.onerror = () => setStatus("error", `${file.name} is not an image the browser can read.`);
      picture.src = url;
    }
  }

  function snapshot() {
    view.toBlob((blob) => {
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `faceray-${new Date().toISOString().replace(/[:.]/g, "-")}.png`;
      link.click();
    }, "image/png");
  }

  document.getElementById("camera").addEventListener("click", useCamera);
  document.getElementById("file").addEventListener("change", (event) => useFile(event.target.files[0]));
  document.getElementById("snapshot").addEventListener("click", snapshot);
  const stage = document.getElementById("stage");
  stage.addEventListener("dragover", (event) => { event.preventDefault(); stage.classList.add("dragging"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
  stage.addEventListener("drop", (event) => {
    event.preventDefault();
    stage.classList.remove("dragging");
    useFile(event.dataTransfer.files[0]);
  });

  // Before the first frame: a short prompt on the picture instead of an empty black box.
  function drawPrompt() {
    context.fillStyle = "#1d1f24";
    context.fillRect(0, 0, view.width, view.height);
    context.fillStyle = "#e8e8e8";
    context.textAlign = "center";
    context.font = `${Math.max(14, Math.round(view.width / 30))}px system-ui, sans-serif`;
    // Below the middle, where the status banner (mid-picture, while the service is away) leaves it readable.
    context.fillText("Allow the camera, or drop an image or a video here", view.width / 2, view.height * 0.65);
    context.textAlign = "start";
  }

  drawPrompt();
  connect();
  if (params.get("camera") !== "0") useCamera();
  else setStatus("ready", "Pick the camera, an image or a video.");
})();
