from pydantic import BaseModel, Field


class Input(BaseModel):
    age: int
    nickname: str | None = Field(None, description="What friends call the customer.")


class Output(BaseModel):
    score: float
    label: str = Field("", deprecated="read score instead.")
