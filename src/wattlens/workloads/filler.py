"""Neutral filler text used to pad a short prompt up to an exact token count.

Written for wattlens. It is plain, everyday prose with no question, instruction or list in it,
so that padding changes the prompt length without asking the model for anything.
"""

FILLER_TEXT = (
    "The morning was quiet and the streets were mostly empty. A few people walked their dogs "
    "along the river, and the bakery on the corner opened its doors at seven. Later in the day "
    "the weather stayed mild, with light clouds and a gentle wind from the west. The library "
    "kept its usual hours, the buses ran on time, and the market sold apples, bread and "
    "flowers. Nothing unusual happened, and the town went about its ordinary business."
)
