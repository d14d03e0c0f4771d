// gridbridge dashboard: swap in the live part of a page every few seconds, and keep a job's
// log following. Same-origin requests only; the session cookie goes with them.
"use strict";
const EVERY_MS = 3000;

async function refresh(section) {
  try {
    const answer = await fetch(section.dataset.refresh, { credentials: "same-origin" });
    if (answer.redirected) {  // signed out meanwhile: the whole page asks to sign in
      window.location.reload();
    } else if (answer.ok) {
      section.innerHTML = await answer.text();
    }
  } catch (err) {
    // the service restarting: try again next time
  }
}

async function follow(pre) {
  try {
    const answer = await fetch(pre.dataset.log, { credentials: "same-origin" });
    if (!answer.ok) {
      delete pre.dataset.log;  // refused or gone: ask no more
      return;
    }
    const text = await answer.text();
    if (text !== pre.textContent) {
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = text;
      if (atEnd) {
        pre.scrollTop = pre.scrollHeight;
      }
    }
  } catch (err) {
    // as above
  }
}

function start() {
  const sections = document.querySelectorAll("section[data-refresh]");
  const logs = document.querySelectorAll("pre[data-log]");
  logs.forEach(follow);
  setInterval(() => {
    if (document.hidden) {
      return;
    }
    sections.forEach(refresh);
    logs.forEach((pre) => {
      if (pre.dataset.log) {
        follow(pre);
      }
    });
  }, EVERY_MS);
}

document.addEventListener("DOMContentLoaded", start);
