#!/usr/bin/env python3
"""Regenerates cases.json: template snippets rendered by Python Jinja2 configured as
transformers does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
its tojson / raise_exception / strftime_now). test_template_engine.c requires lmcore to
produce the same bytes. Error cases (expected error) hold the substring lmcore's message
must contain; Python only confirms that Jinja2 fails too.

usage: python3 tests/template/jinja_reference.py > tests/template/cases.json"""
import json
from datetime import datetime, timezone

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = 1700000000  # LMCORE_STRFTIME_NOW in the test (UTC)


def env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(NOW, tz=timezone.utc).strftime(fmt)

    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    e.filters["tojson"] = tojson
    e.globals["raise_exception"] = raise_exception
    e.globals["strftime_now"] = strftime_now
    return e


MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <b>"},
    {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"},
    {"role": "user", "content": "  spaced  "},
]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather ünïcode",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

# (name, template, context) -- context also gets messages=MSGS unless it sets its own
CASES = [
    ("text", "hello", {}),
    ("output", "{{ 'a' }}{{ \"b\" }}{{ 1 }}{{ 1.0 }}{{ 2.5e3 }}{{ none }}{{ true }}{{ False }}", {}),
    ("floats", "{{ 1/3 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -2.0 }} {{ 10/2 }}", {}),
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ 3 * 'ab' }} {{ [1] * 3 }} {{ -(3) }} {{ 1 + 2 * 3 - 4 }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ true ~ [1, 'x'] }}{{ 'x' + 'y' }}{{ [1] + [2] }}", {}),
    ("compare", "{{ 1 < 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ [1,2] == [1,2] }} {{ 'a' != 'a' }} {{ true == 1 }}", {}),
    ("in", "{{ 'b' in 'abc' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 3 not in [3] }}", {}),
    ("logic", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not 0 }} {{ none or [] }} {{ '' and 1 }} {{ not 1 == 2 }}", {}),
    ("condexpr", "{{ 'a' if 1 else 'b' }}{{ 'c' if 0 else 'd' }}[{{ 'e' if 0 }}]{{ 1 if 0 else 2 if 0 else 3 }}", {}),
    ("strings", "{{ 'it\\'s' }} {{ \"tab\\there\" }} {{ 'nl\\n' }} {{ '\\u00e9\\x41' }} {{ 'a' 'b' }}", {}),
    ("repr", "{{ [1, 'a', none, true, 1.5, {'k': 'v'}] }} {{ {'a': [1, (2, 3)]} }} {{ ('x',) }} {{ \"it's\" }} {{ [\"it's\"] }} {{ ['a\\nb'] }}", {}),
    ("list_dict", "{% set d = {'b': 1, 'a': 2} %}{{ d.b }}{{ d['a'] }}{{ d.missing }}|{{ [1,2,3][1] }}{{ [1,2,3][-1] }}{{ [1][5] }}", {}),
    ("slices", "{{ messages[1:] | length }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[1:4] }} {{ 'abcdef'[::2] }} {{ [1,2,3,4][-2:] }} {{ [1,2,3][:-1] }} {{ 'héllo'[1:3] }} {{ [1,2,3,4,5][4:0:-2] }}", {}),
    ("for_loop", "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}:{{ m.role }};{% endfor %}", {}),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}{% for x in nothing %}y{% else %}none{% endfor %}", {}),
    ("for_filter", "{% for m in messages if m.role == 'user' %}{{ loop.index }}{{ m.content }}{{ loop.length }};{% endfor %}", {}),
    ("for_unpack", "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }},{% endfor %}{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}", {}),
    ("for_dict_string", "{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}{% for c in 'hé!' %}[{{ c }}]{% endfor %}", {}),
    ("loop_prev_next_cycle", "{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }}-{{ loop.cycle('a','b') }} {% endfor %}", {}),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("nested_loops", "{% for a in [1,2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }} {% endfor %}", {}),
    ("range", "{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(5, 0, -2) | list }}", {}),
    ("if_elif", "{% for x in [1,2,3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}other{% endif %}{% endfor %}", {}),
    ("scoping", "{% set x = 1 %}{% for i in [1,2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", {}),
    ("namespace", "{% set ns = namespace(n=0, s='') %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}", {}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (3, 4) %}{{ t[0] }}{{ t | length }}", {}),
    ("set_block", "{% set x %}  block {{ 1 + 1 }}\n{% endset %}[{{ x }}]{% set y | upper | trim %} yo {% endset %}[{{ y }}]", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(punct='.', name='c') }} {{ greet() }}|", {}),
    ("macro_recursion", "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}", {}),
    ("filter_block", "{% filter upper %}abc{{ 'd' }}{% endfilter %}", {}),
    ("raw", "{% raw %}{{ not rendered }}{% endraw %}", {}),
    ("comments", "a{# comment #}b\n  {# lstripped #}\nc{#- x -#}  d", {}),
    ("ws_control", "a  {{- 'b' -}}  c\n{%- if true -%}\n  d\n{%- endif -%}\n  e", {}),
    ("trim_lstrip", "<\n  {% if true %}\n    x\n  {% endif %}\n>\n{% for i in [1,2] %}\n{{ i }}\n{% endfor %}\n", {}),
    ("plus_modifiers", "a\n  {%+ if true %}b{% endif +%}\nc", {}),
    ("lstrip_not_var", "x\n    {{ 'y' }}\n", {}),
    ("trailing_newline", "line\n", {}),
    ("crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc", {}),
    ("filters_text", "{{ '  x  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'aBc' | upper }}{{ 'AbC' | lower }}|{{ 'hello world' | capitalize }}|{{ 'hello big-world' | title }}|{{ 'a-b-c' | replace('-', '+') }}|{{ 'aaa' | replace('a', 'b', 2) }}", {}),
    ("filters_seq", "{{ [3,1,2] | sort }} {{ [3,1,2] | sort(reverse=true) }} {{ ['b','A','a'] | sort }} {{ [1,2,3] | first }} {{ [1,2,3] | last }} {{ [1,2,2,'a','A'] | unique | list }} {{ [1,2,3] | reverse | list }} {{ 'abc' | reverse }} {{ [1,2,3] | sum }} {{ [1,5,3] | max }} {{ [4,2,8] | min }} {{ 'abc' | list }} {{ 'abc' | first }}", {}),
    ("filters_join_map", "{{ messages | map(attribute='role') | join(', ') }}|{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}|{{ messages | rejectattr('role', 'in', ['user', 'system']) | list | length }}|{{ [1, 0, 2] | select | list }}|{{ [1,2,3,4] | select('odd') | list }}|{{ [1,2,3] | reject('even') | list }}|{{ ['a','b'] | map('upper') | join }}|{{ messages | join(',', attribute='role') }}", {}),
    ("selectattr_truthy", "{{ [{'a': 1}, {'a': 0}, {'b': 2}] | selectattr('a') | list }} {{ [{'a': 1}, {'a': 0}] | rejectattr('a') | list }}", {}),
    ("filters_misc", "{{ none | default('d') }} {{ undefined_var | default('d') }} {{ '' | default('e', true) }} {{ 0 | default(5) }} {{ '42' | int + 1 }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 3 | float }} {{ -3 | abs }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 3 | round }} {{ 3.14159 | round(2, 'floor') }} {{ 3.1 | round(0, 'ceil') }} {{ 12 | string }}{{ [1] | string }} {{ {'a':1} | items | list }} {{ 'abc' | length }} {{ {'a':1} | count }}", {}),
    ("indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb\\n' | indent(3, blank=true) }}|{{ 'x\\ny' | indent('--') }}", {}),
    ("tojson", "{{ tools | tojson }}|{{ {'a': [1, 2.5, none, true, 'é\"\\n'], 'b': {}} | tojson }}|{{ {'b': 1, 'a': [1, {'c': 2}]} | tojson(indent=2) }}|{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|{{ 'ü' | tojson(ensure_ascii=true) }}|{{ [] | tojson }}|{{ 1.0 | tojson }}", {"tools": TOOLS}),
    ("tojson_separators", "{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}", {}),
    ("dict_methods", "{% set d = {'a': 1, 'b': 2} %}{{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }} {{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 9) }}{% for k, v in d | dictsort %}{{ k }}{{ v }}{% endfor %}", {}),
    ("str_methods", "{{ 'Hello'.startswith('He') }} {{ 'Hello'.endswith(('x', 'lo')) }} {{ '  s  '.strip() }}|{{ 'xxsxx'.lstrip('x') }}|{{ 'xxsxx'.rstrip('x') }}|{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a.b.c'.rsplit('.', 1) }} {{ 'abc'.upper() }} {{ 'ABC'.lower() }} {{ 'ab ab'.replace('a', 'x') }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.count('l') }} {{ 'hi {} {}'.format(1, 'x') }} {{ 'hi {name}'.format(name='n') }} {{ '-'.join(['a', 'b']) }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ 'a\\nb'.splitlines() }}", {}),
    ("qwen_think_split", "{% set c = messages[2].content %}{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", {}),
    ("tests", "{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ [] is sequence }} {{ 1 is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is true }} {{ false is false }} {{ 1 is true }} {{ true is boolean }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 2 is equalto 2 }} {{ 2 is eq(3) }} {{ 1 is in [1] }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ x is not none }} {{ none is not none }} {{ range is callable }} {{ 1 is gt 0 }} {{ 1 is lt(0) }} {{ 'upper' is filter }} {{ 'odd' is test }}", {"x": 1}),
    ("undefined_ops", "[{{ nope }}][{{ nope | length }}][{% for x in nope %}x{% endfor %}][{{ nope is defined }}][{{ d.nope is defined }}][{{ d.nope }}][{{ 'x' ~ nope }}]", {"d": {}}),
    ("none_attr", "[{{ n.attr }}][{{ n['k'] }}][{{ n.attr is defined }}]", {"n": None}),
    ("strftime", "{{ strftime_now('%Y-%m-%d %H:%M') }} {{ strftime_now('%d %b %Y') }}", {}),
    ("items_filter", "{% for k, v in d | items %}{{ k }}:{{ v }} {% endfor %}", {"d": {"z": 1, "a": [1, 2]}}),
    ("unicode_len", "{{ 'héllo' | length }} {{ '日本語' | length }} {{ '日本語'[1] }} {{ '日本語' | upper }} {{ 'ÉCOLE' | lower }}", {}),
    ("add_generation_prompt", "{% if add_generation_prompt %}<gen>{% endif %}{{ bos_token }}", {"add_generation_prompt": True, "bos_token": "<s>"}),
    ("dict_literal_braces", "{{ {'a': {'b': 1}} }}{{ {'x': 1}['x'] }}", {}),
    ("percent_format", "{{ '%s-%d' % ('a', 3) }} {{ '%05.1f|%x' | format(3.14159, 255) }}", {}),
    ("content_list", "{% for m in msgs %}{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}{% if c.type == 'text' %}{{ c.text }}{% elif c.type == 'image' %}<img>{% endif %}{% endfor %}{% endif %}{% endfor %}", {"msgs": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what?"}]}, {"role": "assistant", "content": "ok"}]}),
    ("int_float_print", "{{ 3 / 1 }} {{ 2 * 1.5 }} {{ 10 // 3 * 1.0 }} {{ 1e100 }} {{ 123456789.123 }} {{ -0.0 }}", {}),
    ("is_not_chain", "{% if m is defined and m.content is not none and 'x' not in m.content %}ok{% endif %}", {"m": {"content": "abc"}}),
    ("elif_chain_vs_else_if", "{% if false %}a{% else %}{% if true %}b{% endif %}c{% endif %}", {}),
    ("messages_index_role", "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{{ loop_messages | length }}", {}),
]

# (name, template, context, substring of lmcore's error message)
ERRORS = [
    ("raise", "ab\n  {{ raise_exception('Roles must alternate') }}", {}, ":2:6: raise_exception: Roles must alternate"),
    ("unknown_tag", "{% include 'x' %}", {}, ":1:4: unknown or unsupported tag 'include'"),
    ("unclosed_if", "{% if x %}abc", {}, "expected 'endif'"),
    ("unclosed_var", "abc {{ x ", {}, ":1:5: unclosed {{ tag"),
    ("bad_token", "{{ x $ y }}", {}, ":1:6: unexpected character '$'"),
    ("unknown_filter", "{{ x | frobnicate }}", {}, ":1:8: no filter named 'frobnicate'"),
    ("unknown_test", "{{ x is frob }}", {}, "no test named 'frob'"),
    ("stray_endfor", "{% endfor %}", {}, ":1:4: unexpected 'endfor'"),
    ("undefined_attr", "{{ nope.x }}", {}, "'nope' is undefined"),
    ("type_error", "{{ 'a' + 1 }}", {}, "unsupported operand type(s) for +: 'str' and 'int'"),
    ("div_zero", "\n\n{{ 1 // 0 }}", {}, ":3:6: integer division or modulo by zero"),
    ("not_iterable", "{% for x in 5 %}{% endfor %}", {}, "'int' object is not iterable"),
    ("unterminated_string", "{{ 'abc }}", {}, "unterminated string literal"),
    ("break_outside", "{% break %}", {}, "outside of a for loop"),
    ("call_non_callable", "{{ x() }}", {"x": 1}, "'int' object is not callable"),
    ("ns_assign_non_ns", "{% set d = {} %}{% set d.x = 1 %}", {}, "cannot assign attribute"),
]


def main():
    e = env()
    out = {"now": NOW, "cases": [], "errors": []}
    for name, src, ctx in CASES:
        c = {"messages": MSGS, **ctx}
        out["cases"].append({"name": name, "template": src, "context": c, "expected": e.from_string(src).render(**c)})
    for name, src, ctx, msg in ERRORS:
        try:
            e.from_string(src).render(**ctx)
        except Exception:
            pass
        else:
            raise SystemExit(f"{name}: Jinja2 did not fail")
        out["errors"].append({"name": name, "template": src, "context": ctx, "error": msg})
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
