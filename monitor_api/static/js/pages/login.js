// Login: the user pastes an API token; it is checked with /whoami and kept in sessionStorage.

import { ApiError } from '../api.js';
import { el } from '../dom.js';
import { t } from '../i18n.js';

export function render(root, { notice, onToken, keep }) {
  const message = el('div', { class: 'login-message', role: 'alert' });
  if (notice) message.append(el('div', { class: 'notice notice-error', text: t(notice) }));
  const input = el('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true,
    spellcheck: 'false', placeholder: 'isk_…',
  });
  const form = el('form', { class: 'card login', novalidate: true },
    el('h1', { 'data-i18n': 'login.title', text: t('login.title') }),
    el('p', { class: 'help', 'data-i18n': 'login.help', text: t('login.help') }),
    el('label', { for: 'token', 'data-i18n': 'login.token', text: t('login.token') }),
    input,
    el('button', { type: 'submit', class: 'primary', 'data-i18n': 'login.submit',
      text: t('login.submit') }),
    message);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    const say = (key) => message.replaceChildren(el('div', {
      class: 'notice notice-error', dataset: { error: key }, text: t(key) }));
    if (!token) {
      say('login.empty');
      input.focus();
      return;
    }
    message.replaceChildren();
    try {
      await onToken(token);
    } catch (err) {
      say(err instanceof ApiError && err.status === 401 ? 'login.invalid'
        : err instanceof ApiError && err.status === 0 ? 'error.network' : 'error.generic');
    }
  });
  keep(input); // a token pasted, then the language switched
  root.append(form);
  input.focus();
}
