// The address book: lists the people of contacts.people live, and adds,
// edits and deletes them. Asks for every column of the table.

import { ConflictError, createVault, indexedDbStore, InvalidTokenError } from '@coffer/sdk';
import { h, initials } from '/common/dom.js';
import config from '/config.js';

const vault = createVault({
  server: config.server,
  clientId: config.clientId,
  // The registered redirect URI: this page.
  redirectUri: new URL('/', location.href).href,
  scope: 'contacts.people:read+create+update+delete',
  // Tokens and the DPoP key survive a reload.
  store: indexedDbStore(),
});
const people = vault.table('contacts.people');

const $ = (id) => document.getElementById(id);
const form = $('person');
let editing; // the row being edited, or undefined when adding
let stopLive = () => {};

// ------------------------------------------------------------ connection

async function start() {
  try {
    // Back from Coffer's consent page? Then this completes the sign-in.
    if (await vault.handleRedirect()) history.replaceState(null, '', location.pathname);
  } catch (error) {
    history.replaceState(null, '', location.pathname);
    return showSignedOut(`Coffer did not connect this app: ${error.message}`);
  }
  if (await vault.isSignedIn()) showSignedIn();
  else showSignedOut();
}

function showSignedOut(reason) {
  stopLive();
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
  stopLive = people.subscribe(
    { order: 'display_name', limit: 1000 },
    {
      next: (rows) => render(rows),
      // The stream stopped for good: most often the user revoked the app.
      error: (error) => lostAccess(error),
    },
  );
}

/** The tokens no longer work: forget them and offer to connect again. */
async function lostAccess(error) {
  await vault.signOut().catch(() => {});
  showSignedOut(
    error.code === 'grant-revoked' || error instanceof InvalidTokenError || error.code === 'invalid_grant'
      ? 'This address book no longer has access to your vault. Connect again to use it.'
      : `The connection to your vault stopped: ${error.message}`,
  );
}

$('connect').addEventListener('click', () => vault.signIn());
$('disconnect').addEventListener('click', async () => {
  await vault.signOut().catch(() => {});
  showSignedOut('Disconnected. Your contacts stay in your vault.');
});

// ------------------------------------------------------------ the list

function render(rows) {
  $('status').textContent = rows.length === 0 ? 'No one here yet: add the first person above.' : '';
  $('people').replaceChildren(
    ...rows.map((person) =>
      h(
        'li',
        { 'data-id': person.id },
        h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(person.display_name)),
        h(
          'div',
          { class: 'grow' },
          h('div', { class: 'name' }, person.display_name),
          h('div', { class: 'detail' }, [person.email, person.phone, person.birthday && `born ${longDate(person.birthday)}`].filter(Boolean).join(' · ')),
        ),
        h('button', { onclick: () => edit(person), 'aria-label': `Edit ${person.display_name}` }, 'Edit'),
        h('button', { class: 'danger', onclick: () => remove(person), 'aria-label': `Delete ${person.display_name}` }, 'Delete'),
      ),
    ),
  );
}

/** `1990-12-10` as `10 December 1990`. */
function longDate(date) {
  return new Date(`${date}T00:00:00Z`).toLocaleDateString('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });
}

// ------------------------------------------------------------ writes

function edit(person) {
  editing = person;
  for (const name of ['display_name', 'email', 'phone', 'birthday']) form.elements[name].value = person[name] ?? '';
  $('form-title').textContent = `Edit ${person.display_name}`;
  $('save').textContent = 'Save changes';
  $('cancel').hidden = false;
  form.elements.display_name.focus();
}

function resetForm() {
  editing = undefined;
  form.reset();
  $('form-title').textContent = 'Add a person';
  $('save').textContent = 'Add';
  $('cancel').hidden = true;
}

$('cancel').addEventListener('click', resetForm);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const values = Object.fromEntries(new FormData(form));
  // An empty field clears the column.
  for (const [key, value] of Object.entries(values)) values[key] = value.trim() === '' ? null : value.trim();
  try {
    // The live list shows the change as soon as the vault has it.
    if (editing) await people.update(editing.id, values, { ifSeq: editing._seq });
    else await people.insert(values);
    resetForm();
  } catch (error) {
    report(error);
  }
});

async function remove(person) {
  try {
    await people.delete(person.id);
    if (editing?.id === person.id) resetForm();
  } catch (error) {
    report(error);
  }
}

function report(error) {
  if (error instanceof ConflictError) {
    $('status').textContent = 'Someone changed this person meanwhile: here is what the vault has now.';
    if (error.current) edit(error.current);
  } else if (error instanceof InvalidTokenError) {
    lostAccess(error);
  } else {
    $('status').textContent = `Not saved: ${error.message}`;
  }
}

start();
