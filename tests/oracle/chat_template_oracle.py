#!/usr/bin/python3
"""Test oracle for fbq's chat templates (src/tokenizer/chat_template.h): renders a real Jinja chat
template with jinja2 exactly as Hugging Face transformers' apply_chat_template does (a sandboxed
environment with trim_blocks and lstrip_blocks, a raise_exception global, bos_token / eos_token).

  /usr/bin/python3 tests/oracle/chat_template_oracle.py REQUEST.json

REQUEST.json: {"template": "...", "bos_token": "<s>", "eos_token": "</s>",
               "cases": [{"messages": [{"role": "user", "content": "..."}], "add_generation_prompt": true}]}
Prints a JSON list with one entry per case: {"text": rendered} or {"error": the raised message}.

Exit status: 0 rendered, 1 bad input, 2 jinja2 missing (callers skip the test then).
"""

import json
import sys

try:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as err:
    print(f"chat_template_oracle: cannot import {err.name}; run it with /usr/bin/python3 (Debian python3-jinja2)",
          file=sys.stderr)
    sys.exit(2)


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise TemplateError(message)


def render_all(request):
    # transformers' _compile_jinja_template: the same environment and globals.
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    template = environment.from_string(request["template"])
    results = []
    for case in request["cases"]:
        try:
            text = template.render(messages=case["messages"], add_generation_prompt=case["add_generation_prompt"],
                                   bos_token=request["bos_token"], eos_token=request["eos_token"])
            results.append({"text": text})
        except TemplateError as error:
            results.append({"error": str(error)})
    return results


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 1
    with open(sys.argv[1], encoding="utf-8") as f:
        request = json.load(f)
    json.dump(render_all(request), sys.stdout, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
