from pydantic import BaseModel, Field


class Input(BaseModel):
    code: str = Field(pattern=r"^(red|green)$")


class Output(BaseModel):
    score: float
