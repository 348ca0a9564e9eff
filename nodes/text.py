"""Text encoding: a prompt and its negative → the model's own text embeddings.

The embeddings come from the model's family, which calls the loaded pipeline's own
``encode_prompt``, so a graph conditions exactly as the pipeline would.
"""

from __future__ import annotations

from nodes.diffusion.bundle import KINEMA_CONDITIONING, KINEMA_MODEL, Conditioning, ModelBundle


def encode_text(model: ModelBundle, prompt: str, negative_prompt: str) -> Conditioning:
    """Prompt and negative prompt embeddings from the model's text encoder."""
    # The family is a heavy module (diffusers), loaded when the node runs.
    from nodes.diffusion.families import family_of

    prompt_embeds, negative_embeds, extras = family_of(model).encode_text(
        model, prompt, negative_prompt)
    return Conditioning(model.family, model.source, prompt, negative_prompt,
                        prompt_embeds, negative_embeds, extras)


class KinemaTextEncode:
    """Encodes a prompt and a negative prompt with the loaded model's CLIP text encoder."""

    DESCRIPTION = ("Turns a prompt (what you want) and a negative prompt (what to avoid) into "
                   "the loaded model's text embeddings, for the keyframe generator and the "
                   "temporal denoiser. Encode with the model you generate with.")
    CATEGORY = "kinema/conditioning"
    RETURN_TYPES = (KINEMA_CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model": (KINEMA_MODEL, {"tooltip": "The model whose text encoder is used "
                                                "(from Load Model)."}),
            "prompt": ("STRING", {"default": "", "multiline": True,
                                  "tooltip": "What the image or video should show."}),
            "negative_prompt": ("STRING", {"default": "", "multiline": True,
                                           "tooltip": "What to steer away from (used when "
                                                      "cfg > 1); may be empty."}),
        }}

    def encode(self, model: ModelBundle, prompt: str, negative_prompt: str = "",
               ) -> tuple[Conditioning]:
        return (encode_text(model, prompt, negative_prompt),)


NODE_CLASS_MAPPINGS = {"KinemaTextEncode": KinemaTextEncode}
NODE_DISPLAY_NAME_MAPPINGS = {"KinemaTextEncode": "Text Encode (Kinema)"}
