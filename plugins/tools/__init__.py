"""Tool use with contrastive self-verification (Mekala et al. 2024, ToolVerifier): the tool library and the programs
that select a tool and fill its parameters, on the System 2 program contract. YAML names them by class_path."""

from litforge.plugins.tools.library import Parameter, Tool, ToolLibrary, read_toolselect_csv
from litforge.plugins.tools.parameters import ParameterVerification, top_two
from litforge.plugins.tools.selection import DirectSelection, ReasoningSelection
from litforge.plugins.tools.verifier import ToolVerifier

__all__ = ["DirectSelection", "Parameter", "ParameterVerification", "ReasoningSelection", "Tool", "ToolLibrary",
           "ToolVerifier", "read_toolselect_csv", "top_two"]
