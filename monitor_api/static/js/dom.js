// Small DOM helpers. Text always goes in through textContent, never innerHTML, so names
// typed into the registry cannot inject markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** "name (id)", or the id alone when the registry holds no name other than the id. */
export const named = (name, id) => (name && name !== id ? `${name} (${id})` : id);

/** Mark which of ``buttons`` (a range's presets) gave the range shown, ``first`` at the
 * start: pressed (aria-pressed, styled so) once clicked, and none once ``inputs`` are edited. */
export function markPresets(buttons, inputs, first = null) {
  const press = (pressed) => {
    for (const b of buttons) b.setAttribute('aria-pressed', String(b === pressed));
  };
  for (const b of buttons) b.addEventListener('click', () => press(b));
  for (const input of inputs) input.addEventListener('input', () => press(null));
  press(first);
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

export const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
});
