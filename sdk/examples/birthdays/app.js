// Birthdays: upcoming birthdays of the people in contacts.people, live, and
// notes (gift ideas, plans) written to notes.notes. Asks to read only two
// columns of the address book, and for its own notes only.

import { createVault, indexedDbStore, InvalidTokenError } from '@coffer/sdk';
import { h, initials } from '/common/dom.js';
import config from '/config.js';

const vault = createVault({
  server: config.server,
  clientId: config.clientId,
  redirectUri: new URL('/', location.href).href,
  scope: 'contacts.people(display_name,birthday):read notes.notes:read+create:own',
  store: indexedDbStore(),
});

const $ = (id) => document.getElementById(id);
const noteForm = $('note');
let stops = [];

// ------------------------------------------------------------ connection

async function start() {
  try {
    if (await vault.handleRedirect()) history.replaceState(null, '', location.pathname);
  } catch (error) {
    history.replaceState(null, '', location.pathname);
    return showSignedOut(`Coffer did not connect this app: ${error.message}`);
  }
  if (await vault.isSignedIn()) showSignedIn();
  else showSignedOut();
}

function showSignedOut(reason) {
  for (const stop of stops.splice(0)) stop();
  $('signed-in').hidden = true;
  $('disconnect').hidden = true;
  $('signed-out').hidden = false;
  if (reason) $('signed-out-reason').textContent = reason;
}

function showSignedIn() {
  $('signed-out').hidden = true;
  $('signed-in').hidden = false;
  $('disconnect').hidden = false;
  $('status').textContent = 'Loading…';
  // Both live queries share one change stream.
  stops = [
    vault.subscribe('contacts.people', { order: 'display_name', limit: 1000 }, { next: renderBirthdays, error: lostAccess }),
    vault.subscribe('notes.notes', { order: '_created_at.desc', limit: 50 }, { next: renderNotes, error: lostAccess }),
  ];
}

async function lostAccess(error) {
  await vault.signOut().catch(() => {});
  showSignedOut(
    error.code === 'grant-revoked' || error instanceof InvalidTokenError
      ? 'This app no longer has access to your vault. Connect again to use it.'
      : `The connection to your vault stopped: ${error.message}`,
  );
}

$('connect').addEventListener('click', () => vault.signIn());
$('disconnect').addEventListener('click', async () => {
  await vault.signOut().catch(() => {});
  showSignedOut('Disconnected. Your notes stay in your vault.');
});

// ------------------------------------------------------------ birthdays

const DAY = 24 * 60 * 60 * 1000;

/** Days from today until the next `YYYY-MM-DD` anniversary (0: today). */
function daysUntil(birthday, today = new Date()) {
  const [, month, day] = birthday.split('-').map(Number);
  const start = Date.UTC(today.getFullYear(), today.getMonth(), today.getDate());
  let next = Date.UTC(today.getFullYear(), month - 1, day);
  if (next < start) next = Date.UTC(today.getFullYear() + 1, month - 1, day);
  return Math.round((next - start) / DAY);
}

function when(days) {
  if (days === 0) return 'today!';
  if (days === 1) return 'tomorrow';
  return `in ${days} days`;
}

function renderBirthdays(people) {
  const known = people.filter((p) => p.birthday);
  const upcoming = known.map((p) => ({ ...p, days: daysUntil(p.birthday) })).sort((a, b) => a.days - b.days);
  const unknown = people.length - known.length;
  $('status').textContent =
    known.length === 0
      ? 'No birthdays yet: add them in your address book.'
      : unknown > 0
        ? `${unknown} ${unknown === 1 ? 'person has' : 'people have'} no birthday in your address book.`
        : '';
  $('upcoming').replaceChildren(
    ...upcoming.map((person) => {
      const date = new Date(`${person.birthday}T00:00:00Z`).toLocaleDateString('en-GB', { day: 'numeric', month: 'long', timeZone: 'UTC' });
      return h(
        'li',
        { 'data-id': person.id },
        h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(person.display_name)),
        h('div', { class: 'grow' }, h('div', { class: 'name' }, person.display_name), h('div', { class: 'detail' }, date)),
        h('span', { class: person.days <= 14 ? 'badge soon' : 'badge' }, when(person.days)),
        h('button', { onclick: () => startNote(person), 'aria-label': `Write a note for ${person.display_name}` }, 'Write a note'),
      );
    }),
  );
}

// ------------------------------------------------------------ notes

function startNote(person) {
  $('note-card').hidden = false;
  $('note-title').textContent = `A note for ${person.display_name}'s birthday`;
  noteForm.elements.title.value = `Birthday: ${person.display_name}`;
  noteForm.elements.body.value = '';
  noteForm.elements.body.focus();
}

$('cancel').addEventListener('click', () => ($('note-card').hidden = true));

noteForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const { title, body } = Object.fromEntries(new FormData(noteForm));
  try {
    await vault.table('notes.notes').insert({ title, body, format: 'plain' });
    $('note-card').hidden = true;
  } catch (error) {
    if (error instanceof InvalidTokenError) lostAccess(error);
    else $('note-title').textContent = `Not saved: ${error.message}`;
  }
});

function renderNotes(notes) {
  $('notes').replaceChildren(
    ...(notes.length === 0
      ? [h('li', { class: 'empty' }, 'No notes yet.')]
      : notes.map((note) =>
          h('li', {}, h('div', { class: 'grow' }, h('div', { class: 'name' }, note.title ?? 'Untitled'), h('div', { class: 'detail' }, note.body ?? ''))),
        )),
  );
}

start();
