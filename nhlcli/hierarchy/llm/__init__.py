"""Category trees from a language model over the OpenAI API (any OpenAI-compatible server).

Modules, one job each: `client` (the openai client, retries, one-line errors), `prompts` (versioned
texts), `schema` (JSON schemas of the answers), `answer_text` (JSON out of a text answer), `labels`
(unique readable class names and back to wnids), `validate` (problems of an answer), `repair` (ask,
validate, repair, cache), `cache` (validated answers on disk), `session` (one build's state),
`strategy` (splitting large sets into requests), `assemble` (groups to a Tree), `builder` (the LLM
source), `hybrid` (WordNet where clear, the model where ambiguous).
"""

from nhlcli.hierarchy.llm.builder import LLMOptions, build_llm_tree
from nhlcli.hierarchy.llm.cache import default_cache_dir
from nhlcli.hierarchy.llm.hybrid import ambiguous_classes, build_hybrid_tree
from nhlcli.hierarchy.llm.prompts import PROMPT_VERSION
from nhlcli.hierarchy.llm.session import BuildReport

__all__ = [
    "PROMPT_VERSION",
    "BuildReport",
    "LLMOptions",
    "ambiguous_classes",
    "build_hybrid_tree",
    "build_llm_tree",
    "default_cache_dir",
]
