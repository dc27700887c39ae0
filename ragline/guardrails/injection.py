"""Prompt-injection flags: instructions to the model found inside retrieved passages."""

from __future__ import annotations

import re
import unicodedata

# Characters that hide text from a reader but not from a model: zero-width characters, bidi
# controls, and Unicode tag characters (U+E0000-E007F, which smuggle ASCII).
_HIDDEN_CHARACTERS = re.compile(
    r"[\u200b-\u200f\u2060-\u2064\u202a-\u202e\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)

_PREVIOUS = (
    r"(?:all |any |the |your |my )?(?:previous|prior|above|earlier|preceding|foregoing|original|system)"
)
_RULES = r"(?:instructions?|prompts?|rules|directions|guidelines|context|messages?|constraints)"

# name -> pattern, matched on the passage's NFKC form in lower case with every run of whitespace
# (line breaks too) made one space.
INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {
    "ignore_instructions": re.compile(
        rf"\b(?:ignore|disregard|forget|override|skip|bypass)\b(?: (?:all|any|everything|every))?"
        rf"(?: (?:of )?(?:the|your|my|these|those|what|you))?(?: were| have been)?(?: told| said)?"
        rf"(?: {_PREVIOUS})? {_RULES}"
        rf"|\bforget (?:everything|all)(?: (?:you|that)\b[^.]{{0,40}})?\b(?:told|said|know|learned)\b"
        rf"|\b(?:do not|don't) follow (?:the |your )?{_PREVIOUS} {_RULES}"
    ),
    "role_override": re.compile(
        r"\byou are now (?:an? |the |my |dan\b|in \w+ mode"
        r"|(?:completely )?(?:unrestricted|unfiltered|jailbroken|free))"
        r"|\byou are no longer (?:bound|restricted|limited|an? |required)|\bfrom now on,? you\b"
        r"|\bpretend (?:to be|you are)\b|\broleplay as\b|\bnew (?:persona|role|identity)\b"
        r"|\b(?:act|behave|respond) as (?:if you were |an? )?"
        r"(?:unrestricted|unfiltered|jailbroken|dan\b|evil|developer|admin|root|system)"
        r"|\b(?:developer|god|jailbreak|dan) mode\b|\bdo anything now\b"
    ),
    "system_prompt": re.compile(
        r"\b(?:reveal|print|show|repeat|output|leak|display|tell me) (?:me )?(?:your|the) "
        r"(?:(?:full|entire|hidden|initial|original|secret) )?(?:system prompt|instructions|prompt)"
        r"|\bnew (?:system )?instructions?:|\b(?:updated|important|urgent) instructions?:"
        r"|(?:^|[\s>\"'])(?:system|assistant) ?: ?"
        r"(?:you |ignore|forget|from now|new instructions|the assistant)"
        r"|#{2,} ?(?:system|instructions?)\b"
    ),
    "chat_markup": re.compile(
        r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>|\[/?inst\]"
        r"|<</?sys>>|</?(?:system|instructions?|assistant)>|<start_of_turn>|\"role\"\s*:\s*\"system\""
    ),
    "addressed_to_model": re.compile(
        r"\b(?:if you are|attention|note to|message (?:to|for)|dear|hey) (?:an? |the )?"
        r"(?:ai|llm|language model|chatbot|ai assistant|gpt|claude)\b"
        r"|\b(?:ai|llm)(?: assistants?| agents?| models?)? (?:reading|processing|summari[sz]ing) this\b"
        r"|\bthe (?:ai|assistant|model) (?:must|should|will) now\b"
    ),
    "exfiltration": re.compile(
        r"\b(?:send|post|upload|forward|transmit|leak|exfiltrate)\b (?:(?:the|this|all|your|any|every) )*"
        r"(?:conversation|chat|history|context|messages?|answers?|prompt|api keys?|passwords?|secrets?"
        r"|credentials|tokens?|documents?|user'?s?\b)[^.\n]{0,60}?"
        r"(?:https?://|\bto (?:this|the following|my) (?:url|address|endpoint|server|webhook))"
        r"|!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s]*=[^)\s]*\)"  # a markdown image that carries data out
        r"|\b(?:include|append|add|put|encode)\b[^.\n]{0,30}\b(?:api keys?|passwords?|secrets?|credentials"
        r"|conversation|chat history|user'?s? (?:data|email|messages?))\b[^.\n]{0,30}"
        r"\b(?:in|to|into)\b[^.\n]{0,20}\b(?:url|link|image|request|query)"
    ),
    "tool_request": re.compile(
        r"\b(?:call|invoke|trigger) (?:the |a |your )(?:\w+[ _-])?(?:tool|function|plugin)\b"
        r"|\bexecute\b[^.\n]{0,40}\b(?:now|immediately|without (?:asking|confirmation))"
        r"|\brm -rf /|\"(?:function_call|tool_calls)\"|\bcurl [^|\n]{0,80}\| ?(?:ba|z)?sh\b"
    ),
}

# Hidden markup, matched on the raw passage: comments, invisible styling, hidden characters.
_HIDDEN_MARKUP = re.compile(
    r"<!--[ \t\n]{0,20}(?:[^\s<>]{1,100}\s{1,20}){5}[\s\S]{0,2000}?-->"
    r"|style\s*=\s*[\"'][^\"']*(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0"
    r"|color\s*:\s*(?:#fff(?:fff)?|white|transparent))|<(?:div|span|p)[^>]*\bhidden\b",
    re.IGNORECASE,
)


def injection_flags(passage: str) -> list[str]:
    """The names of the injection patterns found in a passage, in a fixed order."""
    flags = []
    if _HIDDEN_CHARACTERS.search(passage) or _HIDDEN_MARKUP.search(passage):
        flags.append("hidden_markup")
    text = unicodedata.normalize("NFKC", _HIDDEN_CHARACTERS.sub("", passage)).lower()
    text = re.sub(r"\s+", " ", text)  # "ignore all\nprevious instructions" too
    flags.extend(name for name, pattern in INJECTION_PATTERNS.items() if pattern.search(text))
    return flags
