// The listening report's players: one plays at a time; switching keeps the position.
'use strict';
const clips = [...document.querySelectorAll('.clip')];
let active = null, current = null;
function activate(clip) {
  if (active) active.classList.remove('active');
  active = clip; if (clip) clip.classList.add('active');
}
function players(clip) { return [...clip.querySelectorAll('audio')]; }
function choose(audio, play) {
  const card = audio.closest('.card');
  const was = current;
  document.querySelectorAll('.card.playing').forEach(c => c.classList.remove('playing'));
  card.classList.add('playing');
  activate(audio.closest('.clip'));
  if (was && was !== audio) {
    const t = was.currentTime, going = !was.paused;
    was.pause();
    if (isFinite(audio.duration)) audio.currentTime = Math.min(t, audio.duration);
    play = play || going;
  }
  current = audio;
  if (play) audio.play();
}
document.querySelectorAll('audio').forEach(a => {
  a.addEventListener('play', () => {
    document.querySelectorAll('audio').forEach(o => { if (o !== a) o.pause(); });
    if (current !== a) choose(a, false);
  });
});
document.querySelectorAll('.card').forEach(card => card.addEventListener('click', ev => {
  if (ev.target.tagName === 'AUDIO') return;
  choose(card.querySelector('audio'), true);
}));
document.addEventListener('keydown', ev => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const clip = active || clips[0];
  if (!clip) return;
  if (/^[0-9]$/.test(ev.key)) {
    const audio = players(clip)[Number(ev.key)];
    if (audio) { choose(audio, true); ev.preventDefault(); }
  } else if (ev.key === ' ') {
    const audio = current || players(clip)[0];
    if (audio.paused) choose(audio, true); else audio.pause();
    ev.preventDefault();
  } else if (ev.key === 'n' || ev.key === 'p') {
    const next = clips[clips.indexOf(clip) + (ev.key === 'n' ? 1 : -1)];
    if (next) {
      if (current) current.pause();
      current = null; activate(next);
      next.scrollIntoView({behavior: 'smooth', block: 'start'});
    }
  }
});
