from pydantic import BaseModel, Field


class Input(BaseModel):
    code: str = Field(pattern=r"^[A-Z][0-9]{4}$")


class Output(BaseModel):
    score: float
