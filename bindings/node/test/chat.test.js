'use strict';
// Chat templates through the binding: the bundled model has none, so these tests give a copy
// of it a small template and check rendering, system prompts, template kwargs and that a
// chat generation runs on exactly the rendered prompt's tokens.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { loadModel } = require('..');
const { defaultModel } = require('./helpers');

const TEMPLATE =
  '{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}' +
  '{% if add_generation_prompt %}<|assistant|>{% endif %}' +
  '{% if enable_thinking is defined and not enable_thinking %}[no-think]{% endif %}';

let dir;
let model;
test.before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lmcore-chat-'));
  for (const f of fs.readdirSync(defaultModel)) fs.symlinkSync(path.join(defaultModel, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'chat_template.jinja'), TEMPLATE);
  model = await loadModel(dir, { threads: 1 });
});
test.after(async () => {
  await model?.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('applyChatTemplate renders as transformers would', async () => {
  assert.equal(model.info.hasChatTemplate, true);
  const msgs = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
  ];
  assert.equal(await model.applyChatTemplate(msgs), '<|endoftext|><|system|>Be brief.\n<|user|>Hi\n<|assistant|>');
  assert.equal(
    await model.applyChatTemplate(msgs, { addGenerationPrompt: false }),
    '<|endoftext|><|system|>Be brief.\n<|user|>Hi\n',
  );
  assert.equal(
    await model.applyChatTemplate(msgs, { chatTemplateKwargs: { enable_thinking: false } }),
    '<|endoftext|><|system|>Be brief.\n<|user|>Hi\n<|assistant|>[no-think]',
  );
  const ids = await model.applyChatTemplate(msgs, { tokenize: true });
  assert.deepEqual(ids, await model.tokenize('<|endoftext|><|system|>Be brief.\n<|user|>Hi\n<|assistant|>', { addSpecialTokens: false }));
  assert.equal(ids[0], 0); // the BOS written by the template
});

test('a string prompt becomes a user message after the system prompt', async () => {
  const rendered = '<|endoftext|><|system|>Be brief.\n<|user|>Hi\n<|assistant|>[no-think]';
  const ids = await model.tokenize(rendered, { addSpecialTokens: false });
  const viaIds = await model.generate(ids, { maxTokens: 12 });
  const opts = { maxTokens: 12, systemPrompt: 'Be brief.', chatTemplateKwargs: { enable_thinking: false } };
  const viaString = await model.generate('Hi', opts);
  assert.equal(viaString.usage.promptTokens, ids.length);
  assert.deepEqual(viaString.tokens, viaIds.tokens);
  const viaMessages = await model.generate([{ role: 'user', content: 'Hi' }], opts);
  assert.deepEqual(viaMessages.tokens, viaIds.tokens);
  let streamed = '';
  for await (const c of model.stream('Hi', opts)) streamed += c.text;
  assert.equal(streamed, viaIds.text);
});

test('ignoreChatTemplate encodes the raw prompt (with BOS)', async () => {
  const raw = await model.generate('Hi', { maxTokens: 5, ignoreChatTemplate: true });
  assert.equal(raw.usage.promptTokens, (await model.tokenize('Hi')).length);
  const ids = await model.generate(await model.tokenize('Hi'), { maxTokens: 5 });
  assert.deepEqual(raw.tokens, ids.tokens);
});

test('template errors surface as LM_ERR_TEMPLATE', async () => {
  const bad = fs.mkdtempSync(path.join(os.tmpdir(), 'lmcore-badtmpl-'));
  try {
    for (const f of fs.readdirSync(defaultModel)) fs.symlinkSync(path.join(defaultModel, f), path.join(bad, f));
    fs.writeFileSync(path.join(bad, 'chat_template.jinja'), "{{ raise_exception('no system role') }}");
    const m = await loadModel(bad, { threads: 1 });
    await assert.rejects(m.applyChatTemplate([{ role: 'user', content: 'x' }]), (e) => {
      assert.equal(e.code, 'LM_ERR_TEMPLATE');
      assert.match(e.message, /no system role/);
      return true;
    });
    await assert.rejects(m.generate('x'), { code: 'LM_ERR_TEMPLATE' });
    await m.dispose();
  } finally {
    fs.rmSync(bad, { recursive: true, force: true });
  }
});
