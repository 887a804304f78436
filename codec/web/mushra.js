// A MUSHRA test in one page: data in #test, FLAC stimuli (base64) in #audio, ratings out as a
// JSON download. No request leaves the page: bytes come from atob, never from fetch.
'use strict';
const test = JSON.parse(document.getElementById('test').textContent);
const audioData = JSON.parse(document.getElementById('audio').textContent);
const $ = id => document.getElementById(id);
const FADE = 0.01;  // seconds of crossfade when switching

// Seeded shuffles: ?seed=N repeats an order, otherwise every listener gets their own.
const params = new URLSearchParams(location.search);
const seed = params.has('seed') ? (Number(params.get('seed')) >>> 0)
  : crypto.getRandomValues(new Uint32Array(1))[0];
function mulberry32(a) {
  return () => {
    a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = mulberry32(seed);
function shuffled(xs) {
  xs = xs.slice();
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}
const session = [...crypto.getRandomValues(new Uint8Array(8))]
  .map(b => b.toString(16).padStart(2, '0')).join('');
const plan = shuffled(test.trials.map((_, i) => i)).map(i => ({
  trial: test.trials[i], order: shuffled(test.conditions.map(c => c.id)),
}));
const results = [];
let started = null;

function bytesOf(id) {
  const text = atob(audioData[id]);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes.buffer;
}

// Every stimulus is decoded once on load, so a broken one shows before anyone listens.
window.mushraCheck = {done: false, durations: {}, errors: []};
(async () => {
  const ids = Object.keys(audioData);
  const rate = test.trials.length ? test.trials[0].sample_rate : 16000;
  for (const [n, id] of ids.entries()) {
    $('check').textContent = `Checking the audio: ${n + 1} of ${ids.length}`;
    try {
      const ctx = new OfflineAudioContext(1, 1, rate);
      const buffer = await ctx.decodeAudioData(bytesOf(id));
      mushraCheck.durations[id] = buffer.duration;
    } catch (err) {
      mushraCheck.errors.push(`${id}: ${err}`);
    }
  }
  mushraCheck.done = true;
  if (mushraCheck.errors.length) {
    $('check').textContent = 'Some audio cannot be played here: ' + mushraCheck.errors.join('; ');
    $('check').classList.add('error');
  } else {
    $('check').textContent = `${ids.length} sounds ready.`;
    $('start').disabled = false;
  }
})();

// --- playback: looped buffers, switching at the same position -----------------------------
let ctx = null, buffers = {}, playing = null, startedAt = 0, pausedAt = 0, length = 1;
function position() {
  return playing ? (ctx.currentTime - startedAt) % length : pausedAt;
}
function play(key, from) {
  const buffer = buffers[key];
  const now = ctx.currentTime;
  const at = (from === undefined ? position() : from) % buffer.duration;
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.loop = true;
  const gain = ctx.createGain();
  source.connect(gain).connect(ctx.destination);
  gain.gain.setValueAtTime(0, now);
  gain.gain.linearRampToValueAtTime(1, now + FADE);
  source.start(now, at);
  fadeOut(now);
  playing = {key, source, gain};
  startedAt = now - at;
  length = buffer.duration;
  showPlaying();
}
function fadeOut(now) {
  if (!playing) return;
  playing.gain.gain.setValueAtTime(1, now);
  playing.gain.gain.linearRampToValueAtTime(0, now + FADE);
  playing.source.stop(now + FADE);
}
function stop() {
  if (!playing) return;
  pausedAt = position();
  fadeOut(ctx.currentTime);
  playing = null;
  showPlaying();
}
let lastKey = 'ref';
function toggle(key) {
  if (playing && playing.key === key) stop(); else play(key);
  lastKey = key;
}
function showPlaying() {
  document.querySelectorAll('[data-key]').forEach(b =>
    b.classList.toggle('on', !!playing && b.dataset.key === playing.key));
}
function tick() {
  if (ctx && buffers.ref) $('position-fill').style.width = `${100 * position() / length}%`;
  requestAnimationFrame(tick);
}
$('position').addEventListener('click', ev => {
  const box = ev.currentTarget.getBoundingClientRect();
  const at = Math.max(0, (ev.clientX - box.left) / box.width) * length;
  if (playing) play(playing.key, at); else pausedAt = at;
});

// --- trials --------------------------------------------------------------------------------
let current = -1, shown = -1, rated = {};
async function showTrial(index) {
  stop();
  $('next').disabled = true;
  const {trial, order} = plan[index];
  const decoded = {ref: await ctx.decodeAudioData(bytesOf(trial.reference))};
  for (const cid of order) decoded[cid] = await ctx.decodeAudioData(bytesOf(trial.stimuli[cid]));
  buffers = decoded;
  current = index;
  pausedAt = 0;
  length = buffers.ref.duration;
  rated = {};
  lastKey = 'ref';
  $('trial-title').textContent = `Trial ${index + 1} of ${plan.length}`;
  $('next').textContent = index + 1 === plan.length ? 'Finish' : 'Next trial';
  const columns = order.map((cid, n) => {
    const column = document.createElement('div');
    column.className = 'cond unrated';
    const button = document.createElement('button');
    button.textContent = String(n + 1);
    button.dataset.key = cid;
    button.title = n < 10 ? `play (key ${(n + 1) % 10})` : 'play';
    button.addEventListener('click', () => { toggle(cid); button.blur(); });
    const slider = document.createElement('input');
    Object.assign(slider, {type: 'range', min: 0, max: 100, step: 1, value: 0});
    slider.dataset.condition = cid;
    slider.setAttribute('aria-label', `rating of sound ${n + 1}`);
    const out = document.createElement('output');
    out.textContent = '–';
    slider.addEventListener('input', () => rate(cid, Number(slider.value)));
    column.append(button, slider, out);
    return column;
  });
  $('conds').replaceChildren(...columns);
  updateNext();
  $('intro').classList.add('hidden');
  $('trial').classList.remove('hidden');
  window.scrollTo(0, 0);
  shown = index;
}
function rate(cid, value) {
  const slider = document.querySelector(`input[data-condition="${cid}"]`);
  slider.value = value;
  rated[cid] = Number(slider.value);
  slider.parentElement.classList.remove('unrated');
  slider.parentElement.querySelector('output').textContent = slider.value;
  updateNext();
}
function updateNext() {
  const left = plan[current].order.filter(cid => !(cid in rated)).length;
  $('next').disabled = left > 0;
  $('left').textContent = left ? `${left} sound(s) still to rate` : '';
}
$('next').addEventListener('click', async () => {
  if (shown !== current) return;
  shown = -1;
  const {trial, order} = plan[current];
  results.push({trial: trial.id, file: trial.file, position: current, order,
                ratings: Object.fromEntries(order.map(cid => [cid, rated[cid]]))});
  if (current + 1 < plan.length) return showTrial(current + 1);
  stop();
  $('trial').classList.add('hidden');
  $('done').classList.remove('hidden');
});
$('start').addEventListener('click', async () => {
  ctx = new AudioContext();
  await ctx.resume();
  started = new Date().toISOString();
  requestAnimationFrame(tick);
  await showTrial(0);
});
$('download').addEventListener('click', () => {
  const listener = $('listener').value.trim();
  const ratings = {
    format: 'codec-mushra-ratings', version: 1, test_id: test.test_id, title: test.title,
    session, listener, seed, started, finished: new Date().toISOString(),
    conditions: Object.fromEntries(test.conditions.map(
      c => [c.id, {name: c.name, kind: c.kind, kbps: c.kbps}])),
    trials: results,
  };
  const blob = new Blob([JSON.stringify(ratings, null, 1)], {type: 'application/json'});
  const link = document.createElement('a');
  const who = (listener || session).replace(/[^\w.-]+/g, '_').slice(0, 40);
  link.href = URL.createObjectURL(blob);
  link.download = `mushra-${who}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  $('saved').textContent = `Saved as ${link.download}: send this file to whoever runs the test.`;
});

// --- keys: R reference, 1-9 sounds, space stop/resume, arrows rate or move -----------------
document.addEventListener('keydown', ev => {
  if (shown < 0 || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const order = plan[current].order;
  const key = ev.key.toLowerCase();
  if (ev.target.tagName === 'INPUT' && key.startsWith('arrow')) return;  // the slider's own
  if (key === 'r') toggle('ref');
  else if (/^[0-9]$/.test(key) && (Number(key) || 10) <= order.length) {
    toggle(order[(Number(key) || 10) - 1]);  // 0 is the tenth
  }
  else if (key === ' ') { if (playing) stop(); else play(lastKey); }
  else if ((key === 'arrowup' || key === 'arrowdown') && playing && playing.key !== 'ref') {
    const step = (ev.shiftKey ? 10 : 1) * (key === 'arrowup' ? 1 : -1);
    const base = rated[playing.key] ?? 0;
    rate(playing.key, Math.max(0, Math.min(100, base + step)));
  } else if (key === 'arrowleft' || key === 'arrowright') {
    const keys = ['ref', ...order];
    const at = keys.indexOf(playing ? playing.key : lastKey);
    const next = keys[(at + (key === 'arrowright' ? 1 : -1) + keys.length) % keys.length];
    play(next);
    lastKey = next;
  } else return;
  ev.preventDefault();
});
window.addEventListener('beforeunload', ev => {
  if (results.length && $('done').classList.contains('hidden')) ev.preventDefault();
});
$('reference').addEventListener('click', () => { toggle('ref'); $('reference').blur(); });
$('stop').addEventListener('click', () => { stop(); $('stop').blur(); });
