"""Hostile inputs: what a crafted request, -e value or scenario field may carry. Each that could do anything would
create its own marker file (MARKER_DIR/<id>); the tests check that none ever appears."""

from __future__ import annotations

from pathlib import Path

MARKER_DIR = Path("/tmp/chaoslab-hostile")


def _touch(case: str) -> str:
    return f"touch {MARKER_DIR}/{case}"


def _templates(case: str) -> dict[str, object]:
    cmd = _touch(case)
    return {
        "jinja-expression": f"{{{{ lookup('pipe', '{cmd}') }}}}",
        "jinja-query": f"{{{{ query('ansible.builtin.pipe', '{cmd}') }}}}",
        "jinja-statement": f"{{% set x = lookup('pipe', '{cmd}') %}}",
        "jinja-comment-then-expr": f"{{# c #}}{{{{ lookup('pipe', '{cmd}') }}}}",
        "jinja-in-text": f"200ms{{{{ lookup('pipe', '{cmd}') }}}}",
        "jinja-header-variables": f"#jinja2:variable_start_string:'[[', variable_end_string:']]'\n"
                                  f"[[ lookup('pipe', '{cmd}') ]]",
        "jinja-header-blocks": f"#jinja2:block_start_string:'<%', block_end_string:'%>'\n"
                               f"<% set x = lookup('pipe', '{cmd}') %>",
        "jinja-header-leading-space": f"  #jinja2:variable_start_string:'((', variable_end_string:'))'\n"
                                      f"(( lookup('pipe', '{cmd}') ))",
        "jinja-header-only": "#jinja2:trim_blocks:False",
        "jinja-filter": f"{{{{ '{cmd}' | ansible.builtin.regex_replace('x', 'y') | lookup('pipe') }}}}",
        "jinja-env-lookup": "{{ lookup('ansible.builtin.env', 'HOME') }}",
        "jinja-file-lookup": "{{ lookup('ansible.builtin.file', '/etc/shadow') }}",
        "jinja-vars": "{{ vars }}",
        "jinja-hostvars": "{{ hostvars['redis']['lab_redis_password'] | default('') }}",
        "jinja-undefined": "{{ nope }}",
        "jinja-math": "{{ 7 * 7 }}",
        "jinja-self": "{{ self.__init__.__globals__ }}",
        "jinja-cycler": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "jinja-broken": "{{ unclosed",
        "jinja-raw": f"{{% raw %}}x{{% endraw %}}{{{{ lookup('pipe', '{cmd}') }}}}",
        "unsafe-wrapper-text": "{'__ansible_unsafe': '{{ 7 * 7 }}'}",
        "shell-semicolon": f"200ms; {cmd}",
        "shell-and": f"200ms && {cmd}",
        "shell-pipe": f"200ms | {cmd}",
        "shell-subst": f"$({cmd})",
        "shell-backticks": f"`{cmd}`",
        "shell-newline": f"200ms\n{cmd}",
        "shell-redirect": f"200ms > {MARKER_DIR}/{case}",
        "shell-variable": "${HOME}",
        "shell-glob": "*",
        "option-help": "--help",
        "option-extra-vars": "--extra-vars=@/etc/passwd",
        "option-inventory": "-i /etc/passwd",
        "option-short": "-e",
        "option-dash": "-",
        "path-traversal": "../../../../etc/passwd",
        "path-absolute": "/etc/passwd",
        "path-encoded": "..%2F..%2Fetc%2Fpasswd",
        "path-dotfile": ".ssh",
        "path-home": "~root/.ssh/id_rsa",
        "huge-1mb": "x" * (1 << 20),
        "nul-byte": "200ms\x00",
        "nul-inside": "wor\x00ker-1",
        "control-chars": "200ms\x1b[31m",
        "carriage-return": "200ms\r",
        "empty": "",
        "spaces": "   ",
        "fullwidth-digits": "\uff12\uff10\uff10ms",
        "arabic-digits": "\u0662\u0660\u0660ms",
        "cyrillic-lookalike": "w\u043erkers",
        "zero-width-space": "200\u200bms",
        "rtl-override": "\u202esm002",
        "homoglyph-localhost": "l\u043ecalhost",
        "wrong-type-list": ["200ms"],
        "wrong-type-dict": {"delay": "200ms"},
        "wrong-type-number": 200,
        "wrong-type-bool": True,
        "wrong-type-null": None,
        "wrong-type-float-nan": float("nan"),
        "localhost": "localhost",
        "loopback-address": "127.0.0.1",
        "controller": "controller",
        "all-but-lab": "all:!redis:!monitor:!workers",
        "regex-pattern": "~.*",
        "wildcard": "work*",
    }


CASES = sorted(_templates("x"))


def payload(case: str) -> object:
    return _templates(case)[case]


def markers() -> list[str]:
    return sorted(path.name for path in MARKER_DIR.glob("*")) if MARKER_DIR.is_dir() else []
